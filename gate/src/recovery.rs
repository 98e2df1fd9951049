//! When Redis may have lost admissions: notice, fence, and re-seed from a caught-up ledger.
//!
//! - **Notice.** Every campaign's state records the server identity (`run_id:master_replid`)
//!   it was built under. A server that restarted (even from its AOF or an RDB), a promoted
//!   replica or a restored snapshot has another identity, and it has lost its script cache:
//!   the first admission call answers `NOSCRIPT` ([`GateError::ScriptsMissing`]).
//!   [`Gate::secure`] then runs `lua/fence.lua` for every live campaign and only afterwards
//!   loads the admission scripts; the sweeper runs the same check on a timer ([`Gate::check`]),
//!   which also catches state that vanished under an unchanged identity (a flush, an eviction).
//! - **Fence.** A fenced campaign admits nobody (503 with Retry-After); releases and
//!   roll-forwards do nothing. The fence lives in Redis, so a pod that never saw `NOSCRIPT`
//!   cannot admit either.
//! - **Re-seed** ([`step`]), by the one pod holding the campaign's recovery lock: wait until no
//!   event admitted before the fence can still be on its way to Kafka (the journal deadline:
//!   message timeout plus grace), take the requested topic's end offsets, wait until the
//!   consumer group committed past them, then write stock, holders, settings and a new seed
//!   generation from the ledger and lift the fence, atomically (`lua/reseed.lua`).

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use schema::ids::CampaignId;
use uuid::Uuid;

use crate::connection::Lua;
use crate::keys::Keys;
use crate::ledger::Settings;
use crate::{Gate, GateError};

static FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::with_shared(include_str!("lua/fence.lua")));
static RESEED: LazyLock<Lua> = LazyLock::new(|| Lua::with_shared(include_str!("lua/reseed.lua")));
static LOCK: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/lock.lua")));

/// How long a recovery lock lasts unless its pod renews it (each step does).
pub const LOCK_TTL: Duration = Duration::from_secs(30);
/// Coupons per round trip when staging holders for a re-seed.
const STAGE_CHUNK: usize = 1_000;
/// The release reason of reservations a re-seed found unsettled (their event never reached Kafka).
pub const RECOVERED_REASON: &str = "gate-recovered";

/// A fenced campaign: the fence's value names it, `since_ms` is when it was set (Redis clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub campaign: CampaignId,
    pub value: String,
    pub since_ms: i64,
}

impl Gate {
    /// Runs the loss check (`lua/fence.lua`) for one campaign with the ledger's `settings`:
    /// `Some` when the campaign is (now) fenced. `force` fences it whatever the identity says
    /// (an operator's repair).
    pub async fn check(
        &self,
        settings: &Settings,
        force: bool,
    ) -> Result<Option<Fence>, GateError> {
        let keys = Keys::new(&self.prefix, &settings.id);
        let mut conn = self.conn.clone();
        let (verdict, value, _identity): (String, String, String) = FENCE
            .keys(&[&keys.meta, &keys.fence])
            .arg(Uuid::new_v4().simple().to_string())
            .arg(u8::from(force))
            .settings(settings)
            .invoke(&mut conn)
            .await?;
        match verdict.as_str() {
            "ok" => Ok(None),
            "fenced" => {
                let since_ms = value
                    .rsplit_once(':')
                    .and_then(|(_, since)| since.parse().ok())
                    .ok_or_else(|| GateError::Protocol(value.clone()))?;
                Ok(Some(Fence {
                    campaign: settings.id,
                    value,
                    since_ms,
                }))
            }
            other => Err(GateError::Protocol(other.to_owned())),
        }
    }

    /// Runs the loss check for every campaign of `live` (the ledger's) not yet ended at
    /// `now_ms`. Returns the fenced campaigns. Loads no script: the sweeper's timer runs this.
    pub async fn check_all(&self, live: &[Settings], now_ms: i64) -> Result<Vec<Fence>, GateError> {
        let mut fenced = Vec::new();
        for settings in live.iter().filter(|s| s.ends_ms > now_ms) {
            if let Some(fence) = self.check(settings, false).await? {
                fenced.push(fence);
            }
        }
        Ok(fenced)
    }

    /// After `NOSCRIPT`: fences every campaign of `live` whose state this server may have lost
    /// ([`Gate::check_all`]), then loads the admission scripts on the primaries, then checks
    /// once more, so a server that changed between the checks and the load (a second restart
    /// or failover meanwhile) is fenced within the same call. Returns the fenced campaigns. An
    /// error leaves the scripts unloaded, or the second check undone: the next call retries.
    pub async fn secure(&self, live: &[Settings], now_ms: i64) -> Result<Vec<Fence>, GateError> {
        let mut fenced = self.check_all(live, now_ms).await?;
        let mut conn = self.conn.clone();
        for script in crate::guarded_scripts() {
            conn.load_on_primaries(script).await?;
        }
        for fence in self.check_all(live, now_ms).await? {
            if !fenced.iter().any(|known| known.value == fence.value) {
                fenced.push(fence);
            }
        }
        Ok(fenced)
    }

    /// The server's clock (unix ms): fences and admissions are timed by it.
    pub async fn now_ms(&self) -> Result<i64, GateError> {
        let mut conn = self.conn.clone();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
        Ok(secs * 1_000 + micros / 1_000)
    }

    /// Takes or renews the recovery lock of a fenced campaign for `token`: false when another
    /// pod holds it or the fence is gone.
    pub async fn lock_recovery(
        &self,
        campaign: &CampaignId,
        token: &str,
    ) -> Result<bool, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let locked: i64 = LOCK
            .keys(&[&keys.recover, &keys.fence])
            .arg(token)
            .arg(LOCK_TTL.as_millis() as u64)
            .invoke(&mut conn)
            .await?;
        Ok(locked == 1)
    }

    /// The reservations in a campaign's journal (unconfirmed when the fence was set).
    pub async fn journal_ids(&self, campaign: &CampaignId) -> Result<Vec<Uuid>, GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.journal)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        ids.iter()
            .map(|id| Uuid::try_parse(id).map_err(|_| GateError::Protocol(id.clone())))
            .collect()
    }

    /// Writes one chunk of (user, seq, coupon) from the ledger into the recovery's staged
    /// holders and slots; rows come ordered by user and seq, so a user's last write is their
    /// count. Staged keys expire by themselves if the recovery is abandoned.
    async fn stage(
        &self,
        campaign: &CampaignId,
        token: &str,
        rows: &[(String, i32, Uuid)],
    ) -> Result<(), GateError> {
        let keys = Keys::new(&self.prefix, campaign);
        let (holders, slots) = keys.staged(token);
        let mut pipe = redis::pipe();
        for (user, seq, coupon) in rows {
            pipe.hset(&holders, user, seq).ignore();
            pipe.hset(&slots, format!("{seq}:{user}"), coupon.simple().to_string())
                .ignore();
        }
        pipe.pexpire(&holders, 600_000).ignore();
        pipe.pexpire(&slots, 600_000).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Swaps the staged state in and lifts `fence` (`lua/reseed.lua`): the new generation, or
    /// `None` when the lock or the fence changed meanwhile (nothing was written).
    async fn swap_in(
        &self,
        fence: &Fence,
        token: &str,
        seed: &Reseed<'_>,
    ) -> Result<Option<u64>, GateError> {
        let keys = Keys::new(&self.prefix, &fence.campaign);
        let (holders, slots) = keys.staged(token);
        let mut all = keys.state().to_vec();
        all.extend([keys.fence.as_str(), &keys.recover, &holders, &slots]);
        let mut call = RESEED
            .keys(&all)
            .arg(token)
            .arg(&fence.value)
            .settings(seed.settings)
            .arg(seed.issued)
            .arg(self.expiry_ms(seed.settings.ends_ms))
            .arg(RECOVERED_REASON);
        for id in seed.unsettled {
            call = call.arg(id.simple().to_string());
        }
        let mut conn = self.conn.clone();
        let (outcome, generation): (String, u64) = call.invoke(&mut conn).await?;
        Ok((outcome == "reseeded").then_some(generation))
    }
}

struct Reseed<'a> {
    settings: &'a Settings,
    issued: u64,
    unsettled: &'a [Uuid],
}

/// The requested topic's end offsets at one moment, by partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ends(pub Vec<(i32, i64)>);

/// A boxed future of a [`Log`] read.
pub type LogRead<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The event log, as a recovery needs it.
pub trait Log: Sync {
    /// The requested topic's end offsets now.
    fn ends(&self) -> LogRead<'_, Ends>;
    /// Whether the consumer group committed at or past `ends` on every partition: the ledger
    /// then holds every event produced before they were read.
    fn caught_up<'a>(&'a self, ends: &'a Ends) -> LogRead<'a, bool>;
}

/// One recovery as the pod running it remembers it between steps.
#[derive(Debug, Clone)]
pub struct Progress {
    fence: String,
    token: String,
    ends: Option<Ends>,
}

/// Where a recovery step left the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Another pod holds the recovery lock.
    Elsewhere,
    /// Events admitted before the fence may still be on their way to Kafka.
    InFlight,
    /// The consumer group has not yet committed past the end offsets taken.
    CatchingUp,
    /// Re-seeded: admissions again. `fenced_ms`: how long the campaign was fenced.
    Reseeded { generation: u64, fenced_ms: i64 },
    /// The fence or the lock changed meanwhile, or the ledger no longer has the campaign.
    Stale,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("kafka: {0}")]
    Log(String),
}

/// Moves the recovery of `fence` one step on; call it again until it re-seeds. Safe from any
/// number of pods at once: one holds the lock, and the re-seed re-checks lock and fence.
pub async fn step(
    gate: &Gate,
    db: &tokio_postgres::Client,
    log: &dyn Log,
    fence: &Fence,
    progress: &mut Option<Progress>,
) -> Result<Step, RecoveryError> {
    if progress.as_ref().is_none_or(|p| p.fence != fence.value) {
        *progress = Some(Progress {
            fence: fence.value.clone(),
            token: Uuid::new_v4().simple().to_string(),
            ends: None,
        });
    }
    let Some(current) = progress.as_mut() else {
        return Ok(Step::Stale);
    };
    if !gate.lock_recovery(&fence.campaign, &current.token).await? {
        return Ok(Step::Elsewhere);
    }
    let now_ms = gate.now_ms().await?;
    let deadline_ms = i64::try_from(gate.journal_deadline().as_millis()).unwrap_or(i64::MAX);
    if now_ms < fence.since_ms.saturating_add(deadline_ms) {
        return Ok(Step::InFlight);
    }
    let ends = match &current.ends {
        Some(ends) => ends.clone(),
        None => {
            let ends = log.ends().await.map_err(RecoveryError::Log)?;
            current.ends = Some(ends.clone());
            ends
        }
    };
    if !log.caught_up(&ends).await.map_err(RecoveryError::Log)? {
        return Ok(Step::CatchingUp);
    }
    let Some(settings) = crate::ledger::settings(db, &fence.campaign).await? else {
        return Ok(Step::Stale);
    };
    let token = current.token.clone();
    let Some(issued) = stage_holders(gate, db, &fence.campaign, &token).await? else {
        return Ok(Step::Elsewhere);
    };
    let journal = gate.journal_ids(&fence.campaign).await?;
    let unsettled = unsettled(db, &journal).await?;
    let seed = Reseed {
        settings: &settings,
        issued,
        unsettled: &unsettled,
    };
    Ok(match gate.swap_in(fence, &token, &seed).await? {
        Some(generation) => {
            *progress = None;
            Step::Reseeded {
                generation,
                fenced_ms: now_ms - fence.since_ms,
            }
        }
        None => Step::Stale,
    })
}

/// Streams the campaign's coupons from the ledger into the staged holders and slots, in
/// chunks (memory stays bounded however large the campaign), renewing the recovery lock after
/// each. Returns how many there are, or `None` when the lock was lost meanwhile.
async fn stage_holders(
    gate: &Gate,
    db: &tokio_postgres::Client,
    campaign: &CampaignId,
    token: &str,
) -> Result<Option<u64>, RecoveryError> {
    let rows = db
        .query_raw(
            include_str!("sql/coupons_select_holders_by_campaign.sql"),
            [&campaign.0],
        )
        .await?;
    let chunks = rows
        .map(|row| {
            let row = row?;
            Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        })
        .try_chunks(STAGE_CHUNK);
    let mut chunks = std::pin::pin!(chunks);
    let mut issued = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.1)?;
        issued += chunk.len() as u64;
        gate.stage(campaign, token, &chunk).await?;
        if !gate.lock_recovery(campaign, token).await? {
            return Ok(None);
        }
    }
    Ok(Some(issued))
}

/// The reservations of `journal` the ledger holds neither as a coupon nor as a rejection.
async fn unsettled(
    db: &tokio_postgres::Client,
    journal: &[Uuid],
) -> Result<Vec<Uuid>, RecoveryError> {
    if journal.is_empty() {
        return Ok(Vec::new());
    }
    let settled: std::collections::HashSet<Uuid> = db
        .query(
            include_str!("sql/issuances_select_settled_by_ids.sql"),
            &[&journal],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(journal
        .iter()
        .copied()
        .filter(|id| !settled.contains(id))
        .collect())
}

/// The requested topic and the consumer group behind `client` (a reader that carries the group's
/// id and never joins it, `service::KafkaArgs::reader`): the [`Log`] of the ingress and of
/// `couponctl verify --repair`.
pub struct GroupLog {
    client: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    topic: String,
}

/// Bound of each broker call of a [`GroupLog`] read.
const LOG_TIMEOUT: Duration = Duration::from_secs(2);

impl GroupLog {
    pub fn new(client: std::sync::Arc<rdkafka::consumer::BaseConsumer>, topic: &str) -> GroupLog {
        GroupLog {
            client,
            topic: topic.to_owned(),
        }
    }

    /// Runs a blocking read of the broker on a blocking thread, bounded as a whole.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&rdkafka::consumer::BaseConsumer, &str) -> rdkafka::error::KafkaResult<T>
        + Send
        + 'static,
    ) -> Result<T, String> {
        let (client, topic) = (self.client.clone(), self.topic.clone());
        let task = tokio::task::spawn_blocking(move || read(&client, &topic));
        match tokio::time::timeout(LOG_TIMEOUT * 4, task).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".to_owned()),
        }
    }
}

impl Log for GroupLog {
    fn ends(&self) -> LogRead<'_, Ends> {
        Box::pin(async move {
            self.read(|client, topic| service::kafka::end_offsets(client, topic, LOG_TIMEOUT))
                .await
                .map(Ends)
        })
    }

    fn caught_up<'a>(&'a self, ends: &'a Ends) -> LogRead<'a, bool> {
        let ends = ends.0.clone();
        Box::pin(async move {
            self.read(move |client, topic| {
                service::kafka::committed_past(client, topic, &ends, LOG_TIMEOUT)
            })
            .await
        })
    }
}
