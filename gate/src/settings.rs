//! Operator decisions in the gate: a campaign's settings (stock, limit, window, close) applied
//! from the ledger (`lua/adjust.lua`).

use std::sync::LazyLock;

use schema::ids::CampaignId;

use crate::connection::Lua;
use crate::keys::Keys;
use crate::{Gate, GateError, Seed};

static ADJUST: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/adjust.lua")));

impl Gate {
    /// Applies an operator's change (absolute values; stock only grows). False when the gate
    /// does not know the campaign.
    pub async fn adjust(
        &self,
        campaign: &CampaignId,
        seed: Seed,
        closed: bool,
    ) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let known: i64 = ADJUST
            .keys(&[&keys.meta])
            .arg(seed.total_stock)
            .arg(seed.per_user_limit)
            .arg(seed.starts_ms)
            .arg(seed.ends_ms)
            .arg(u8::from(closed))
            .invoke(&mut conn)
            .await?;
        Ok(known == 1)
    }

}
