//! Operator decisions in the gate: a campaign's settings (stock, limit, window, close) applied
//! from the ledger in the ledger's order (`lua/adjust.lua`), and the hold that pauses admissions
//! while a change is between the gate and the ledger (`lua/hold.lua`, `lua/unhold.lua`).
//!
//! An operator's change runs: hold (the gate stops admitting for the campaign), commit in the
//! ledger with the next `settings_version`, adjust (the gate applies that version and resumes).
//! A change that does not commit lifts its hold; one whose gate call failed keeps it until the
//! ingress's sweeper re-applies the ledger's settings, which also lifts a hold older than
//! [`HOLD_LAPSE`] (its change died). So no admission happens under settings older than a
//! committed change.

use std::sync::LazyLock;
use std::time::Duration;

use schema::ids::CampaignId;

use crate::connection::Lua;
use crate::keys::Keys;
use crate::ledger::Settings;
use crate::{Gate, GateError};

static ADJUST: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/adjust.lua")));
static HOLD: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/hold.lua")));
static UNHOLD: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/unhold.lua")));

/// How long a hold may last (by the Redis clock) before `adjust` lifts it without its change:
/// the change that set it died before its ledger commit. A change still running aborts before
/// committing once half of it has passed, so a hold never lapses under a change that commits.
pub const HOLD_LAPSE: Duration = Duration::from_secs(10);

/// What [`Gate::adjust`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjusted {
    /// The settings were newer than the gate's: applied.
    Applied,
    /// The gate already holds this version or a newer one: nothing changed (but a hold the
    /// version covers, or a lapsed one, was lifted).
    Current,
    /// The gate does not know the campaign (seeding or re-seeding takes the ledger's settings).
    Unknown,
}

/// A hold [`Gate::hold`] set (or, for a campaign the gate does not know, would have set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The gate knows the campaign (and now holds its admissions).
    pub known: bool,
    /// The hold's instant by the Redis clock (unix ms): later than the `requested_at` of every
    /// admission the gate made before it. A close takes it as `closed_at`.
    pub since_ms: i64,
    /// The Redis clock says the campaign has started, or the gate admitted someone already.
    pub started: bool,
    /// Admissions the gate counted.
    pub accepted: i64,
    /// The settings version of the change holding.
    pub version: i64,
}

impl Hold {
    /// The value `hold.lua` wrote in the campaign's meta.
    fn value(&self) -> String {
        format!("{}:{}", self.version, self.since_ms)
    }
}

impl Gate {
    /// Applies the ledger's settings of a campaign when their version is newer than the gate's
    /// (absolute values; stock and the window's end only grow, a close is final), and lifts an
    /// operator's hold the gate's version now covers or that lapsed. Idempotent.
    pub async fn adjust(&self, settings: &Settings) -> Result<Adjusted, GateError> {
        let keys = Keys::new(&self.prefix, &settings.id);
        let mut conn = self.conn.clone();
        let outcome: i64 = ADJUST
            .keys(&[&keys.meta])
            .settings(settings)
            .arg(HOLD_LAPSE.as_millis() as u64)
            .invoke(&mut conn)
            .await?;
        match outcome {
            1 => Ok(Adjusted::Applied),
            2 => Ok(Adjusted::Current),
            0 => Ok(Adjusted::Unknown),
            other => Err(GateError::Protocol(format!("adjust answered {other}"))),
        }
    }

    /// Holds a campaign's admissions for an operator's change of settings `version` (the
    /// ledger's current one plus one), until [`Gate::adjust`] applies it or [`Gate::unhold`]
    /// lifts it. `starts_ms` is the campaign's start, for [`Hold::started`].
    pub async fn hold(
        &self,
        campaign: &CampaignId,
        version: i64,
        starts_ms: i64,
    ) -> Result<Hold, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let (known, since_ms, started, accepted): (i64, i64, i64, i64) = HOLD
            .keys(&[&keys.meta])
            .arg(version)
            .arg(starts_ms)
            .invoke(&mut conn)
            .await?;
        Ok(Hold {
            known: known == 1,
            since_ms,
            started: started == 1,
            accepted,
            version,
        })
    }

    /// Lifts `hold` when its change does not commit; `committed` is the ledger's version
    /// without the change. When the gate lacks that version too (an earlier change did not
    /// reach it), admissions stay held until it is applied. True when the hold was lifted.
    pub async fn unhold(
        &self,
        campaign: &CampaignId,
        hold: &Hold,
        committed: i64,
    ) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let lifted: i64 = UNHOLD
            .keys(&[&keys.meta])
            .arg(hold.value())
            .arg(committed)
            .invoke(&mut conn)
            .await?;
        Ok(lifted == 1)
    }

    /// Removes what seeding a campaign wrote, for a campaign whose creation did not commit in
    /// the ledger (nobody knows its id, so nobody was admitted).
    pub async fn forget(&self, campaign: &CampaignId) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(&keys.state()[..])
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
