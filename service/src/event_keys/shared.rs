//! The event keys a process holds: read from PostgreSQL at start, re-read on an interval, and
//! once more when a record names a key id the set lacks. A failed read keeps the set it had;
//! until a first read succeeds nothing is signed and nothing is judged.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use super::{Args, Key, KeySet, Refusal};
use crate::PostgresArgs;

/// Longest wait for one reading of the table.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a process that holds no keys yet tries again.
const RETRY_UNLOADED: Duration = Duration::from_secs(1);
/// An unknown key id triggers a reload only if the last one is older than this, so a flood of
/// forged key ids costs at most one query a second.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why the keys could not be read.
#[derive(Debug)]
pub struct LoadError(String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the event keys: {}", self.0)
    }
}

impl std::error::Error for LoadError {}

impl From<tokio_postgres::Error> for LoadError {
    fn from(error: tokio_postgres::Error) -> Self {
        LoadError(error.to_string())
    }
}

/// The process-wide key set.
pub struct EventKeys {
    /// Where the `event_keys` table lives (`DATABASE_URL`).
    source: PostgresArgs,
    /// `EVENT_KEYS_REFRESH_MS`.
    refresh: Duration,
    /// The last successful reading; `None` until there is one.
    current: RwLock<Option<Arc<KeySet>>>,
    /// When the last reading succeeded.
    loaded_at: Mutex<Option<Instant>>,
    /// One reading at a time.
    loading: tokio::sync::Mutex<()>,
}

impl EventKeys {
    /// Reads the keys once (a failure is logged; signing and verifying wait for a later
    /// reading), then re-reads them every `EVENT_KEYS_REFRESH_MS` (every second while none
    /// were read) until the last handle is dropped.
    pub async fn start(source: PostgresArgs, args: &Args) -> Arc<EventKeys> {
        let keys = Arc::new(EventKeys::new(
            source,
            Duration::from_millis(args.refresh_ms),
        ));
        if let Err(e) = keys.reload().await {
            tracing::warn!(error = %e, "no event keys yet: issuance events can be neither signed nor verified until they are read");
        }
        keys.spawn_refresh();
        keys
    }

    /// Re-reads the keys every `EVENT_KEYS_REFRESH_MS` (every second while none were read)
    /// until the last handle is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) {
        tokio::spawn(refresh(Arc::downgrade(self)));
    }

    /// A set that reads nothing until [`EventKeys::reload`] is called.
    pub fn new(source: PostgresArgs, refresh: Duration) -> EventKeys {
        EventKeys {
            source,
            refresh,
            current: RwLock::new(None),
            loaded_at: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The last reading, if any.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        // A poisoned lock only means a writer panicked mid-assignment; the value is whole.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether a reading succeeded.
    pub fn loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Whether a key is active now, so an event could be signed.
    pub fn can_sign(&self) -> bool {
        self.current()
            .is_some_and(|set| set.signing_key(Instant::now()).is_some())
    }

    /// The `coupon-signature` header value of a record, or `None` when no key is active.
    pub fn sign(&self, record_key: &[u8], value: &[u8]) -> Option<String> {
        self.current()?.sign(record_key, value)
    }

    /// Reads the table now.
    pub async fn reload(&self) -> Result<(), LoadError> {
        let _one_at_a_time = self.loading.lock().await;
        let set = tokio::time::timeout(LOAD_TIMEOUT, load(&self.source))
            .await
            .map_err(|_| LoadError(format!("no answer within {LOAD_TIMEOUT:?}")))??;
        if set.is_empty() {
            tracing::warn!("the event_keys table holds no live key");
        }
        let set = Some(Arc::new(set));
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        self.set_loaded_at(Instant::now());
        Ok(())
    }

    /// Checks a record's signature (`header`: the value of its `coupon-signature` header).
    /// A key id the set lacks triggers one reload first, unless one just happened. The outer
    /// error means the keys could not be read, so the record cannot be judged yet.
    pub async fn verify(
        &self,
        header: Option<&[u8]>,
        record_key: &[u8],
        value: &[u8],
    ) -> Result<Result<i32, Refusal>, LoadError> {
        let set = self
            .current()
            .ok_or_else(|| LoadError("not read yet".to_owned()))?;
        match set.verify(header, record_key, value, Instant::now()) {
            Err(Refusal::UnknownKey(_)) => {}
            verdict => return Ok(verdict),
        }
        let recent = self
            .loaded_at()
            .is_some_and(|at| at.elapsed() < MIN_RELOAD_INTERVAL);
        if !recent {
            self.reload().await?;
        }
        let set = self.current().unwrap_or(set);
        Ok(set.verify(header, record_key, value, Instant::now()))
    }

    fn loaded_at(&self) -> Option<Instant> {
        match self.loaded_at.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_loaded_at(&self, at: Instant) {
        match self.loaded_at.lock() {
            Ok(mut guard) => *guard = Some(at),
            Err(poisoned) => *poisoned.into_inner() = Some(at),
        }
    }
}

/// One reading of the live keys on a new connection to `source`.
pub async fn load(source: &PostgresArgs) -> Result<KeySet, LoadError> {
    let client = source
        .connect()
        .await
        .map_err(|e| LoadError(e.to_string()))?;
    Ok(read(&client).await?)
}

/// One reading of the live keys, their moments turned into this process's clock.
pub async fn read(client: &tokio_postgres::Client) -> Result<KeySet, tokio_postgres::Error> {
    let rows = client
        .query(include_str!("../sql/event_keys_select_live.sql"), &[])
        .await?;
    let now = Instant::now();
    let after = |ms: i64| now + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let retires_in_ms: Option<i64> = row.try_get("retires_in_ms")?;
        keys.push(Key::new(
            row.try_get("id")?,
            row.try_get("secret")?,
            after(row.try_get("activates_in_ms")?),
            retires_in_ms.map(after),
        ));
    }
    Ok(KeySet::new(keys))
}

/// Re-reads the keys until the set is dropped.
async fn refresh(keys: Weak<EventKeys>) {
    loop {
        let wait = match keys.upgrade() {
            Some(keys) if keys.loaded() => keys.refresh,
            Some(keys) => keys.refresh.min(RETRY_UNLOADED),
            None => return,
        };
        tokio::time::sleep(wait).await;
        let Some(keys) = keys.upgrade() else { return };
        let had = keys.loaded();
        match keys.reload().await {
            Ok(()) if !had => tracing::info!("event keys read"),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the event keys failed; keeping the last reading")
            }
        }
    }
}
