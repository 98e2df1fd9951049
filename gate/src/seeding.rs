//! Seeding the gate: a new campaign, a campaign rebuilt from the ledger after Redis lost it, and
//! the counters set from the ledger by reconciliation.

use schema::ids::CampaignId;
use uuid::Uuid;

use crate::keys::Keys;
use crate::{Gate, GateError, Seed};

impl Gate {
    /// Makes a new campaign known to the gate. Only fills fields that are absent, so running it
    /// twice never resets a campaign's counters.
    pub async fn seed(&self, campaign: &CampaignId, seed: Seed) -> Result<(), GateError> {
        self.write_meta(campaign, seed, i64::from(seed.total_stock), 0)
            .await
    }

    pub(crate) async fn write_meta(
        &self,
        campaign: &CampaignId,
        seed: Seed,
        remaining: i64,
        accepted: i64,
    ) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (field, value) in [
            ("remaining", remaining),
            ("accepted", accepted),
            ("total", i64::from(seed.total_stock)),
            ("limit", i64::from(seed.per_user_limit)),
            ("starts_ms", seed.starts_ms),
            ("ends_ms", seed.ends_ms),
            ("closed", 0),
        ] {
            pipe.hset_nx(&keys.meta, field, value).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Rebuilds a campaign the gate lost (Redis restarted empty) from the ledger: who holds which
    /// coupon first, then the counters, so the campaign reappears only once its holders are known.
    /// `coupons` are (user, seq, coupon id). Does nothing when the gate still knows the campaign.
    pub async fn reseed(
        &self,
        campaign: &CampaignId,
        seed: Seed,
        issued: u32,
        coupons: &[(String, u32, Uuid)],
    ) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let exists: bool = redis::cmd("EXISTS")
            .arg(&keys.meta)
            .query_async(&mut conn)
            .await?;
        if exists {
            return Ok(false);
        }
        let mut held: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for chunk in coupons.chunks(1_000) {
            let mut pipe = redis::pipe();
            for (user, seq, coupon) in chunk {
                let slot = format!("{seq}:{user}");
                pipe.hset(&keys.slots, slot, coupon.simple().to_string())
                    .ignore();
                let count = held.entry(user).or_default();
                *count = (*count).max(*seq);
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        let holders: Vec<(&str, u32)> = held.into_iter().collect();
        for chunk in holders.chunks(1_000) {
            redis::cmd("HSET")
                .arg(&keys.holders)
                .arg(chunk)
                .query_async::<()>(&mut conn)
                .await?;
        }
        let remaining = i64::from(seed.total_stock.saturating_sub(issued));
        self.write_meta(campaign, seed, remaining, i64::from(issued))
            .await?;
        Ok(true)
    }

    /// Sets the counters from the ledger when the system is quiet (reconciliation repair).
    pub async fn set_counters(
        &self,
        campaign: &CampaignId,
        remaining: i64,
        accepted: i64,
    ) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        redis::cmd("HSET")
            .arg(&keys.meta)
            .arg("remaining")
            .arg(remaining)
            .arg("accepted")
            .arg(accepted)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
