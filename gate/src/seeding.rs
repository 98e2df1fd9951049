//! Seeding the gate with a new campaign, and the expiry of a campaign's keys.

use std::sync::LazyLock;

use schema::ids::CampaignId;

use crate::connection::Lua;
use crate::keys::Keys;
use crate::{Gate, GateError, Seed};

static SEED: LazyLock<Lua> = LazyLock::new(|| Lua::with_shared(include_str!("lua/seed.lua")));

impl Gate {
    /// Makes a new campaign known to the gate (`lua/seed.lua`): its settings at version 1, its
    /// whole stock, and the server identity loss detection compares. Running it twice never
    /// resets a campaign's counters.
    pub async fn seed(&self, campaign: &CampaignId, seed: Seed) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        SEED.keys(&[&keys.meta])
            .arg(seed.total_stock)
            .arg(seed.per_user_limit)
            .arg(seed.starts_ms)
            .arg(seed.ends_ms)
            .arg(1)
            .arg(self.expiry_ms(seed.ends_ms))
            .invoke::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Lets every key of a campaign expire `retention` after its end (`ends_ms`, which may
    /// have moved later since the keys were written). Idempotent; the sweeper runs it for live
    /// campaigns, so keys an admission created are covered too.
    pub async fn expire(&self, campaign: &CampaignId, ends_ms: i64) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let at = self.expiry_ms(ends_ms);
        let mut pipe = redis::pipe();
        for key in keys.state() {
            pipe.cmd("PEXPIREAT").arg(key).arg(at).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }
}
