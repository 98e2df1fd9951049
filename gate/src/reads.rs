//! Reads of the gate: live figures, the admission behind an issuance id, the journal's size.

use schema::ids::{CampaignId, IssuanceId};

use crate::keys::Keys;
use crate::{Admission, Admitted, Figures, Gate, GateError};

impl Gate {
    /// Remaining stock and admissions of a campaign, if the gate knows it.
    pub async fn figures(&self, campaign: &CampaignId) -> Result<Option<Figures>, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let ((remaining, accepted), released): ((Option<i64>, Option<i64>), i64) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.meta)
            .arg("remaining")
            .arg("accepted")
            .hlen(&keys.released)
            .query_async(&mut conn)
            .await?;
        Ok(remaining.map(|remaining| Figures {
            remaining,
            accepted: accepted.unwrap_or(0),
            released,
        }))
    }

    /// The admission behind an issuance id, pending or released.
    pub async fn admission(&self, issuance: &IssuanceId) -> Result<Option<Admission>, GateError> {
        let keys = Keys::new(&self.prefix, &issuance.campaign);
        let field = issuance.reservation.simple().to_string();
        let mut conn = self.conn.clone();
        let (pending, released): (Option<String>, Option<String>) = redis::pipe()
            .hget(&keys.admissions, &field)
            .hget(&keys.released, &field)
            .query_async(&mut conn)
            .await?;
        if let Some(value) = pending {
            return Admitted::parse(&value)
                .map(|admitted| Some(Admission::Pending(admitted)))
                .ok_or(GateError::Protocol(value));
        }
        Ok(released.and_then(|value| {
            let (reason, user) = value.split_once(':')?;
            Some(Admission::Released {
                user: user.to_owned(),
                reason: reason.to_owned(),
            })
        }))
    }

    /// Round trip to Redis, for readiness.
    pub async fn ping(&self) -> Result<(), GateError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Whether the campaign is fenced ([`crate::recovery`]).
    pub async fn fenced(&self, campaign: &CampaignId) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        Ok(redis::cmd("EXISTS")
            .arg(&keys.fence)
            .query_async(&mut conn)
            .await?)
    }

    /// Reservations not yet confirmed by Kafka.
    pub async fn journal_len(&self, campaign: &CampaignId) -> Result<u64, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZCARD")
            .arg(&keys.journal)
            .query_async(&mut conn)
            .await?)
    }
}
