//! User routes: request an issuance (the hot path) and read its status.

use std::time::Instant;

use schema::campaign::{CampaignStatus, CouponStatus};
use schema::ids::{CampaignId, IssuanceId};
use schema::proto::IssuanceRequested;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::publish::PublishError;
use crate::App;
use crate::http::auth::Principal;
use crate::http::problem::Problem;
use crate::metrics::{Outcome, Produced};
use gate::{Admission, Reservation};

/// The 202 body.
/// Where an issuance stands: admitted and on its way (`accepted`), a coupon in the ledger
/// (`issued`), refused by the ledger (`rejected`), or handed back by the gate because Kafka
/// refused its event (`released`). The last three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuanceStatus {
    Accepted,
    Issued,
    Rejected,
    Released,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub issuance_id: IssuanceId,
    pub campaign_id: CampaignId,
    pub status: IssuanceStatus,
}

/// Reserves in the gate, then produces the event; answers only once Kafka acknowledged it.
///
/// **Invariant:** a 202 means the reservation is recorded in Redis and the event is persisted
/// in Kafka. A definitive produce failure releases the reservation; an uncertain one keeps it
/// (it is rolled forward with the same issuance id), and both answer 503.
pub async fn request(
    app: &App,
    caller: &Principal,
    campaign: CampaignId,
) -> Result<Accepted, Problem> {
    if !app.publisher.can_sign() {
        // Nothing reserved: without an event key the event could not be produced.
        return Err(Problem::unavailable(
            "the event keys are not loaded yet; retry",
        ));
    }
    let issuance = IssuanceId::new(campaign);
    let started = Instant::now();
    let reservation = reserve(app, caller, &issuance)
        .instrument(tracing::info_span!(
            "redis.reserve",
            otel.kind = "client",
            db.system.name = "redis"
        ))
        .await
        .inspect_err(|_| app.metrics.reservation(Outcome::Unavailable, started))?;
    app.metrics.reservation(outcome(&reservation), started);
    let (seq, requested_ms, generation) = match reservation {
        Reservation::Accepted {
            seq,
            requested_ms,
            generation,
        } => (seq, requested_ms, generation),
        Reservation::Duplicate { reservation } => {
            let existing = reservation.map(|reservation| IssuanceId {
                campaign,
                reservation,
            });
            return Err(Problem::AlreadyIssued {
                issuance_id: existing.map(|id| id.to_string()),
            });
        }
        Reservation::SoldOut => return Err(Problem::SoldOut),
        Reservation::NotOpen => return Err(Problem::CampaignNotOpen),
        Reservation::UnknownCampaign => return Err(unknown_to_the_gate(app, &campaign).await),
        Reservation::Fenced => {
            return Err(Problem::Unavailable {
                detail: "the gate is re-seeding this campaign after a Redis failure; retry",
                retry_after_secs: 2,
            });
        }
        Reservation::Held => {
            return Err(Problem::unavailable(
                "an operator's change to this campaign is being applied; retry",
            ));
        }
    };

    let event = IssuanceRequested {
        issuance_id: issuance.to_string(),
        campaign_id: campaign.to_string(),
        user_id: caller.user.as_str().to_owned(),
        seq,
        requested_at_ms: requested_ms,
    };
    produce(app, issuance, generation, &event).await?;
    Ok(Accepted {
        issuance_id: issuance,
        campaign_id: campaign,
        status: IssuanceStatus::Accepted,
    })
}

/// One reservation attempt. When the server lost the admission scripts (`NOSCRIPT`: it
/// restarted, failed over or was flushed), the campaigns it may have lost are fenced first
/// (`Recovery::secure`), then the attempt runs once more.
async fn reserve(
    app: &App,
    caller: &Principal,
    issuance: &IssuanceId,
) -> Result<Reservation, Problem> {
    let attempt = || {
        app.gate
            .reserve(&issuance.campaign, &caller.user, &issuance.reservation)
    };
    match attempt().await {
        Err(gate::GateError::ScriptsMissing) => {
            app.recovery.secure(app).await?;
            Ok(attempt().await?)
        }
        result => Ok(result?),
    }
}

/// The gate does not know the campaign: it never existed (404), it ended and its keys expired
/// (403), or the gate lost it and the sweeper is about to fence and re-seed it (503).
async fn unknown_to_the_gate(app: &App, campaign: &CampaignId) -> Problem {
    match crate::campaigns::public::campaign(app, campaign).await {
        Ok(known) => match known.status {
            CampaignStatus::Ended | CampaignStatus::Closed => Problem::CampaignNotOpen,
            CampaignStatus::Scheduled | CampaignStatus::Open => {
                app.recovery.wake.notify_one();
                Problem::Unavailable {
                    detail: "the gate is re-seeding this campaign after a Redis failure; retry",
                    retry_after_secs: 2,
                }
            }
        },
        Err(problem) => problem,
    }
}

/// Produces the admitted request's event: confirmed, or the reservation released (not
/// persisted) or kept for roll-forward (uncertain), and 503.
async fn produce(
    app: &App,
    issuance: IssuanceId,
    generation: u64,
    event: &IssuanceRequested,
) -> Result<(), Problem> {
    let started = Instant::now();
    let published = app
        .publisher
        .publish(event)
        .instrument(tracing::info_span!(
            "kafka.produce",
            otel.name = %format!("send {}", app.config.topic_requested),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = %app.config.topic_requested,
            messaging.message.id = %event.issuance_id,
        ))
        .await;
    app.metrics.produced(
        match &published {
            Ok(()) => Produced::Persisted,
            Err(PublishError::NotPersisted(_) | PublishError::Unsigned) => Produced::NotPersisted,
            Err(PublishError::Uncertain(_)) => Produced::Uncertain,
        },
        started,
    );
    match published {
        Ok(()) => {
            app.confirmations.confirm(issuance);
            Ok(())
        }
        Err(e @ (PublishError::NotPersisted(_) | PublishError::Unsigned)) => {
            tracing::warn!(error = %e, "the event was not persisted; releasing the reservation");
            let reason = match e {
                PublishError::Unsigned => "event-unsigned",
                _ => "kafka-refused",
            };
            match release(app, &issuance, generation, reason).await {
                Ok(true) => super::outcomes::announce_release(&app.db, issuance),
                Ok(false) => {}
                // The admission stays journaled; reconciliation settles it.
                Err(release) => {
                    tracing::error!(error = ?release, issuance = %issuance, "release failed");
                }
            }
            Err(kafka_unavailable())
        }
        Err(PublishError::Uncertain(e)) => {
            tracing::warn!(error = %e, issuance = %issuance, "kafka outcome uncertain; reservation kept");
            Err(kafka_unavailable())
        }
    }
}

/// Hands the reservation back; after `NOSCRIPT`, once more after the loss check.
async fn release(
    app: &App,
    issuance: &IssuanceId,
    generation: u64,
    reason: &str,
) -> Result<bool, Problem> {
    match app.gate.release(issuance, generation, reason).await {
        Err(gate::GateError::ScriptsMissing) => {
            app.recovery.secure(app).await?;
            Ok(app.gate.release(issuance, generation, reason).await?)
        }
        result => Ok(result?),
    }
}

fn outcome(reservation: &Reservation) -> Outcome {
    match reservation {
        Reservation::Accepted { .. } => Outcome::Accepted,
        Reservation::Duplicate { .. } => Outcome::Duplicate,
        Reservation::SoldOut => Outcome::SoldOut,
        Reservation::NotOpen => Outcome::NotOpen,
        Reservation::UnknownCampaign => Outcome::UnknownCampaign,
        Reservation::Fenced => Outcome::Fenced,
        Reservation::Held => Outcome::Held,
    }
}

fn kafka_unavailable() -> Problem {
    Problem::unavailable("the event log did not acknowledge in time; retry")
}

/// The status body of `GET /v1/issuances/{id}`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub issuance_id: IssuanceId,
    pub campaign_id: CampaignId,
    pub status: IssuanceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<Coupon>,
}

#[derive(Debug, Serialize)]
pub struct Coupon {
    pub coupon_id: uuid::Uuid,
    pub seq: i32,
    pub status: CouponStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The ledger decides first (issued or rejected are terminal); otherwise the gate knows whether
/// the admission is pending or was released. Another user's issuance is reported as absent.
pub async fn status(
    app: &App,
    caller: &Principal,
    issuance: IssuanceId,
) -> Result<Status, Problem> {
    let not_found = || Problem::NotFound("unknown issuance");
    let mut status = Status {
        issuance_id: issuance,
        campaign_id: issuance.campaign,
        status: IssuanceStatus::Accepted,
        reason: None,
        coupon: None,
    };
    let db = app.db().await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&issuance.reservation, &issuance.campaign.0];
    let coupon = db
        .prepare_cached(include_str!("../sql/coupons_select_by_id_and_campaign.sql"))
        .await?;
    if let Some(row) = db.query_opt(&coupon, &params).await? {
        let user: &str = row.try_get("user_id")?;
        if user != caller.user.as_str() {
            return Err(not_found());
        }
        status.status = IssuanceStatus::Issued;
        let expires_at: OffsetDateTime = row.try_get("expires_at")?;
        let stored = row.try_get("status")?;
        let coupon_status = CouponStatus::at(stored, expires_at, OffsetDateTime::now_utc())
            .ok_or(Problem::Internal)?;
        status.coupon = Some(Coupon {
            coupon_id: issuance.reservation,
            seq: row.try_get("seq")?,
            status: coupon_status,
            issued_at: row.try_get("issued_at")?,
            expires_at,
        });
        return Ok(status);
    }
    let rejection = db
        .prepare_cached(include_str!(
            "../sql/issuance_rejections_select_by_id_and_campaign.sql"
        ))
        .await?;
    if let Some(row) = db.query_opt(&rejection, &params).await? {
        let user: &str = row.try_get("user_id")?;
        if user != caller.user.as_str() {
            return Err(not_found());
        }
        status.status = IssuanceStatus::Rejected;
        status.reason = Some(row.try_get("reason")?);
        return Ok(status);
    }
    let admission = app.gate.admission(&issuance).await?;
    match admission {
        Some(Admission::Pending(admitted)) if admitted.user == caller.user.as_str() => Ok(status),
        Some(Admission::Released { user, reason }) if user == caller.user.as_str() => {
            status.status = IssuanceStatus::Released;
            status.reason = Some(reason);
            Ok(status)
        }
        _ => Err(not_found()),
    }
}
