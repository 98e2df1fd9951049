//! The gate: stock, holders and admissions of each campaign in Redis, decided by one atomic
//! Lua call per request. Used by the ingress (admission, release, roll-forward), by the ingress's
//! sweeper and `couponctl verify` (re-seeding and reconciliation against the ledger).
//!
//! # Layout
//! - this file: [`Gate`] (connect, reserve, release, adjust, claim, clear) and its answers;
//! - `lua/`: the scripts (`reserve.lua`, `release.lua`, `claim.lua`, `adjust.lua`), KEYS and
//!   ARGV documented in each;
//! - [`rules`]: the reservation rules as pure logic, which `reserve.lua` implements;
//! - `keys`: the keys of one campaign; `reads`: figures, admissions, journal size; `seeding`:
//!   seeding, re-seeding from the ledger, counters;
//! - [`reconcile`]: gate against ledger, per campaign: breaches and repair;
//! - `connection`: one server or a Redis Cluster, plaintext or TLS ([`Endpoint`]), and the
//!   script calls.
//!
//! All keys of one campaign share the hash tag `{c:<campaign id>}`, so each script touches a single
//! Redis Cluster slot, and every command the gate sends routes by a campaign key. Scripts are sent
//! by SHA; on `NOSCRIPT` the gate loads the script on the node owning the slot and retries.
//!
//! **Invariant:** a request is admitted only by `reserve.lua`, which checks window, per-user
//! limit and stock and records the admission and its journal entry in the same atomic call.
//! Redis unreachable means the caller gets an error (503), never an admission without the check.
//!
//! **Invariant:** a journal entry ends exactly one way: cleared once Kafka confirmed the event,
//! released (`release.lua`) after a definitive refusal, or claimed by the sweeper
//! (`claim.lua`) and re-produced. A claimed entry can no longer be released.

use std::sync::LazyLock;
use std::time::Duration;

use schema::ids::{CampaignId, IssuanceId, UserId};
use schema::proto::IssuanceRequested;
use uuid::Uuid;

use crate::connection::{Conn, Lua};
use crate::keys::Keys;

pub use crate::connection::Endpoint;

mod connection;
mod keys;
pub mod ledger;
mod reads;
pub mod reconcile;
pub mod recovery;
pub mod rules;
mod seeding;
pub mod settings;

/// The outcome of one reservation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Admitted: the user's coupon number `seq`, admitted at `requested_ms` by the Redis clock.
    Accepted {
        seq: u32,
        requested_ms: i64,
        /// The seed generation it was admitted in: a release names it, so a reservation of an
        /// earlier generation never touches a newer seed.
        generation: u64,
    },
    /// The user is at the limit; their newest reservation (absent only after a partial loss).
    Duplicate {
        reservation: Option<Uuid>,
    },
    SoldOut,
    NotOpen,
    UnknownCampaign,
    /// The server may have lost this campaign's admissions: nobody is admitted until it is
    /// re-seeded from a caught-up ledger.
    Fenced,
    /// An operator's change is between the gate and the ledger: nobody is admitted under
    /// settings it is replacing.
    Held,
}

/// A recorded admission, for status reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Pending(Admitted),
    Released { user: String, reason: String },
}

/// What the gate recorded when it admitted a request: enough to rebuild its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub user: String,
    pub seq: u32,
    pub requested_ms: i64,
}

impl Admitted {
    /// Parses the admissions hash value `"<seq>:<requested_ms>:<user>"`.
    pub(crate) fn parse(value: &str) -> Option<Admitted> {
        let mut parts = value.splitn(3, ':');
        Some(Admitted {
            seq: parts.next()?.parse().ok()?,
            requested_ms: parts.next()?.parse().ok()?,
            user: parts.next()?.to_owned(),
        })
    }
}

/// A journal entry the sweeper claimed: its event must be produced again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub issuance: IssuanceId,
    pub admitted: Admitted,
}

impl Overdue {
    /// The reservation's event, rebuilt from its admission record: identical to the original.
    pub fn event(&self) -> IssuanceRequested {
        IssuanceRequested {
            issuance_id: self.issuance.to_string(),
            campaign_id: self.issuance.campaign.to_string(),
            user_id: self.admitted.user.clone(),
            seq: self.admitted.seq,
            requested_at_ms: self.admitted.requested_ms,
        }
    }
}

/// What the gate is seeded with when a campaign is created.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub total_stock: u32,
    pub per_user_limit: u32,
    pub starts_ms: i64,
    pub ends_ms: i64,
}

/// Live counters of a campaign in the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub remaining: i64,
    pub accepted: i64,
    /// Admissions handed back because Kafka definitively did not take their event.
    pub released: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Settings that cannot work together, named (never their values).
    #[error("{0}")]
    Config(String),
    #[error("unexpected reply from the gate script: {0}")]
    Protocol(String),
    /// The server has none of the admission scripts (restarted, failed over, flushed): the
    /// campaigns it may have lost must be fenced before they are loaded (`Gate::secure`).
    #[error("the gate's scripts are not loaded on the server (it restarted or failed over)")]
    ScriptsMissing,
}

/// Handle to the gate. Cheap to clone: one multiplexed, self-reconnecting connection (to one
/// server, or to every master of a cluster).
#[derive(Clone)]
pub struct Gate {
    conn: Conn,
    prefix: String,
    /// How long after admission an unconfirmed reservation is rolled forward.
    journal_deadline_ms: u64,
    /// How long a campaign's keys outlive its end.
    retention_ms: i64,
}

/// How long a campaign's keys outlive its end by default (`GATE_KEY_RETENTION_MS`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The admission scripts, by SHA (`lua/*.lua`).
static RESERVE: LazyLock<Lua> = LazyLock::new(|| Lua::guarded(include_str!("lua/reserve.lua")));
static RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::guarded(include_str!("lua/release.lua")));
static CLAIM: LazyLock<Lua> = LazyLock::new(|| Lua::guarded(include_str!("lua/claim.lua")));

/// The admission scripts, loaded together by [`Gate::secure`].
pub(crate) fn guarded_scripts() -> [&'static Lua; 3] {
    [&RESERVE, &RELEASE, &CLAIM]
}

impl Gate {
    /// Connects to the gate's Redis (every node of a cluster). Fails when the settings do not
    /// fit together, a server is unreachable or its certificate does not verify: never a
    /// fallback to plaintext. `timeout` bounds connecting and each command. The admission
    /// scripts are loaded by [`Gate::secure`], never here.
    pub async fn connect(
        endpoint: &Endpoint,
        prefix: &str,
        timeout: Duration,
        journal_deadline: Duration,
    ) -> Result<Self, GateError> {
        let conn = Conn::open(endpoint, timeout).await?;
        let gate = Gate {
            conn,
            prefix: prefix.to_owned(),
            journal_deadline_ms: journal_deadline.as_millis() as u64,
            retention_ms: DEFAULT_RETENTION.as_millis() as i64,
        };
        Ok(gate)
    }

    /// The same gate, keeping a campaign's keys `retention` past its end.
    pub fn with_retention(mut self, retention: Duration) -> Gate {
        self.retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// When a campaign ending at `ends_ms` should lose its keys (unix ms).
    pub(crate) fn expiry_ms(&self, ends_ms: i64) -> i64 {
        ends_ms.saturating_add(self.retention_ms)
    }

    /// How long after admission an unconfirmed reservation is rolled forward: also the longest
    /// an admitted request's event can still be on its way to Kafka.
    pub fn journal_deadline(&self) -> Duration {
        Duration::from_millis(self.journal_deadline_ms)
    }

    /// Checks and records one request in a single atomic script call.
    pub async fn reserve(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        reservation: &Uuid,
    ) -> Result<Reservation, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let (outcome, id, seq, now, generation): (String, String, i64, i64, u64) = RESERVE
            .keys(&[
                &keys.meta,
                &keys.holders,
                &keys.slots,
                &keys.admissions,
                &keys.journal,
                &keys.fence,
            ])
            .arg(user.as_str())
            .arg(reservation.simple().to_string())
            .arg(self.journal_deadline_ms)
            .invoke(&mut conn)
            .await?;
        Ok(match outcome.as_str() {
            "accepted" => Reservation::Accepted {
                seq: u32::try_from(seq).map_err(|_| GateError::Protocol(outcome.clone()))?,
                requested_ms: now,
                generation,
            },
            "duplicate" => Reservation::Duplicate {
                reservation: Uuid::try_parse(&id).ok(),
            },
            "sold-out" => Reservation::SoldOut,
            "not-open" => Reservation::NotOpen,
            "unknown" => Reservation::UnknownCampaign,
            "fenced" => Reservation::Fenced,
            "held" => Reservation::Held,
            other => return Err(GateError::Protocol(other.to_owned())),
        })
    }

    /// Hands an admission's unit back (Kafka definitively refused its event). Idempotent; refuses
    /// (returns false) once the sweeper claimed the reservation, while the campaign is fenced,
    /// or when it was admitted in another seed `generation`.
    pub async fn release(
        &self,
        issuance: &IssuanceId,
        generation: u64,
        reason: &str,
    ) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, &issuance.campaign);
        let mut conn = self.conn.clone();
        let mut all = keys.state().to_vec();
        all.push(&keys.fence);
        let released: i64 = RELEASE
            .keys(&all)
            .arg(issuance.reservation.simple().to_string())
            .arg(reason)
            .arg(generation)
            .invoke(&mut conn)
            .await?;
        Ok(released == 1)
    }

    /// Claims up to `max` journal entries past their deadline for re-production. A claim lasts
    /// `hold`; an entry not cleared by then is claimed again.
    pub async fn claim_overdue(
        &self,
        campaign: &CampaignId,
        hold: Duration,
        max: usize,
    ) -> Result<Vec<Overdue>, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let flat: Vec<String> = CLAIM
            .keys(&[&keys.admissions, &keys.journal, &keys.rolling, &keys.fence])
            .arg(hold.as_millis() as u64)
            .arg(max)
            .invoke(&mut conn)
            .await?;
        flat.chunks(2)
            .map(|pair| match pair {
                [id, value] => {
                    let reservation =
                        Uuid::try_parse(id).map_err(|_| GateError::Protocol(id.clone()))?;
                    let admitted =
                        Admitted::parse(value).ok_or_else(|| GateError::Protocol(value.clone()))?;
                    Ok(Overdue {
                        issuance: IssuanceId {
                            campaign: *campaign,
                            reservation,
                        },
                        admitted,
                    })
                }
                _ => Err(GateError::Protocol("odd claim reply".to_owned())),
            })
            .collect()
    }

    /// Removes confirmed reservations from the journal, one atomic pipeline per campaign.
    pub async fn clear(&self, confirmed: &[IssuanceId]) -> Result<(), GateError> {
        let mut by_campaign: std::collections::HashMap<CampaignId, Vec<String>> =
            std::collections::HashMap::new();
        for issuance in confirmed {
            by_campaign
                .entry(issuance.campaign)
                .or_default()
                .push(issuance.reservation.simple().to_string());
        }
        let mut conn = self.conn.clone();
        for (campaign, ids) in by_campaign {
            let keys = Keys::new(&self.prefix, &campaign);
            redis::pipe()
                .atomic()
                .zrem(&keys.journal, &ids)
                .ignore()
                .hdel(&keys.rolling, &ids)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
}
