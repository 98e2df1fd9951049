//! Long-polls parked on an issuance's outcome (`GET /v1/issuances/{id}` with `Prefer: wait=N`),
//! and the one subscription per process that wakes them.
//!
//! The consumer, inside the transaction that writes a batch's coupons and rejections, sends the
//! batch's issuance ids on the PostgreSQL channel [`CHANNEL`] (several ids per notification,
//! joined by [`SEPARATOR`]); PostgreSQL delivers a notification only once its transaction
//! committed, so a woken waiter always finds the row. The ingress sends one too when it releases
//! a reservation. [`listen`] holds one dedicated connection per process with `LISTEN` on the
//! channel and wakes the waiters of each id it names: the number of waiters never changes how
//! many queries PostgreSQL serves.
//!
//! A waiter registers before its first read, so an outcome committed between the two still
//! wakes it (a [`Notify`] keeps the wake-up until it is awaited). After a lost connection the
//! listener reconnects with backoff, listens again, and wakes every waiter once: notifications
//! sent meanwhile are gone, and each waiter reads its status again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use schema::ids::IssuanceId;
use service::backoff::Backoff;
use tokio::sync::{Notify, Semaphore, SemaphorePermit, watch};
use tokio_postgres::AsyncMessage;

/// The PostgreSQL channel of settled issuances (the consumer sends on the same name). Channels
/// are per database: deployments and test runs on databases of their own never hear each other.
pub const CHANNEL: &str = "coupon_outcomes";
/// Between the issuance ids of one notification.
pub const SEPARATOR: char = ',';

/// Longest wait for a connection and its `LISTEN`, and for the periodic check of a quiet one.
const CONNECT_BOUND: Duration = Duration::from_secs(10);
/// How often a connection that heard nothing is checked with a round trip (a silently dropped
/// connection would otherwise hold the listener forever).
const PING_EVERY: Duration = Duration::from_secs(30);

/// The long-poll settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Longest `Prefer: wait=N` honoured on `GET /v1/issuances/{id}`, in seconds (at most 30);
    /// a larger N is capped to it. 0 turns long-polling off (every read answers at once).
    #[arg(
        long,
        env = "ISSUANCE_WAIT_MAX_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=30)
    )]
    pub issuance_wait_max_secs: u64,

    /// Most long-polls parked at once. They have this budget of their own and hold none of
    /// `INGRESS_MAX_IN_FLIGHT`'s permits while they wait; past it a long-poll answers at once
    /// with the current state.
    #[arg(
        long,
        env = "ISSUANCE_WAITERS_MAX",
        default_value_t = 20_000,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub issuance_waiters_max: usize,
}

/// The waiters of this process, their budget, and the stop that ends every wait.
pub struct Outcomes {
    registry: Arc<Registry>,
    budget: Semaphore,
    stop: watch::Sender<bool>,
}

/// The waiters of one issuance id, each with its key: several may wait on one id (a client's
/// retries, several tabs).
type Parked = Vec<(u64, Arc<Notify>)>;

/// Waiters by issuance id.
struct Registry {
    waiters: Mutex<HashMap<IssuanceId, Parked>>,
    next: AtomicU64,
    parked: Gauge,
    wakeups: Counter,
    reconnects: Counter,
}

impl Outcomes {
    /// `parked`, `wakeups` and `reconnects` are the series this module keeps up to date.
    pub fn new(max_waiters: usize, parked: Gauge, wakeups: Counter, reconnects: Counter) -> Self {
        Outcomes {
            registry: Arc::new(Registry {
                waiters: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                parked,
                wakeups,
                reconnects,
            }),
            budget: Semaphore::new(max_waiters),
            stop: watch::channel(false).0,
        }
    }

    /// The waiters of this process, with their listener started on `postgres`.
    pub fn start(
        args: &WaitArgs,
        metrics: &crate::metrics::Metrics,
        postgres: service::PostgresArgs,
    ) -> Self {
        let outcomes = Outcomes::new(
            args.issuance_waiters_max,
            metrics.issuance_waiters.clone(),
            metrics.issuance_wakeups.clone(),
            metrics.outcome_listener_reconnects.clone(),
        );
        spawn_listener(&outcomes, postgres);
        outcomes
    }

    /// Parks a waiter on `id`, or `None` when the budget is spent (or shutdown began). The
    /// waiter leaves the registry when dropped, however its request ended.
    pub fn register(&self, id: IssuanceId) -> Option<Waiter<'_>> {
        if self.stopping() {
            return None;
        }
        let permit = self.budget.try_acquire().ok()?;
        let key = self.registry.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        lock(&self.registry.waiters)
            .entry(id)
            .or_default()
            .push((key, notify.clone()));
        self.registry.parked.inc();
        Some(Waiter {
            registry: &self.registry,
            id,
            key,
            notify,
            _permit: permit,
        })
    }

    /// Wakes the waiters of each issuance id `payload` names (as the consumer sends them).
    pub fn wake(&self, payload: &str) -> usize {
        self.registry.wake(payload)
    }

    /// Ends every wait (shutdown) and the listener; later long-polls answer at once.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes once [`Outcomes::stop`] was called.
    pub async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Waiters parked now.
    pub fn parked(&self) -> usize {
        lock(&self.registry.waiters).values().map(Vec::len).sum()
    }
}

impl Registry {
    fn wake(&self, payload: &str) -> usize {
        let ids: Vec<IssuanceId> = payload
            .split(SEPARATOR)
            .filter_map(|id| id.trim().parse().ok())
            .collect();
        let waiters = lock(&self.waiters);
        let mut woken = 0;
        for id in &ids {
            for (_, notify) in waiters.get(id).into_iter().flatten() {
                notify.notify_one();
                woken += 1;
            }
        }
        drop(waiters);
        self.wakeups.inc_by(woken as u64);
        woken
    }

    /// Every waiter once: after a gap in which notifications may have been lost.
    fn wake_all(&self) -> usize {
        let waiters = lock(&self.waiters);
        let mut woken = 0;
        for (_, notify) in waiters.values().flatten() {
            notify.notify_one();
            woken += 1;
        }
        drop(waiters);
        self.wakeups.inc_by(woken as u64);
        woken
    }
}

/// One parked long-poll. Dropping it removes it from the registry and returns its budget.
pub struct Waiter<'a> {
    registry: &'a Registry,
    id: IssuanceId,
    key: u64,
    notify: Arc<Notify>,
    _permit: SemaphorePermit<'a>,
}

impl Waiter<'_> {
    /// Completes at the next wake-up of this id, or at once when one came since the last.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiters = lock(&self.registry.waiters);
        if let Some(list) = waiters.get_mut(&self.id) {
            list.retain(|(key, _)| *key != self.key);
            if list.is_empty() {
                waiters.remove(&self.id);
            }
        }
        drop(waiters);
        self.registry.parked.dec();
    }
}

/// Tells every process's waiters that `issuance` was released (its reservation handed back):
/// a notification on [`CHANNEL`], sent on a task of its own. Best effort: a failure is logged
/// and the waiters read the release at the end of their wait.
pub fn announce_release(db: &deadpool_postgres::Pool, issuance: IssuanceId) {
    let db = db.clone();
    tokio::spawn(async move {
        let sent = async {
            let client = db.get().await.map_err(|e| e.to_string())?;
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANNEL, &issuance.to_string()],
                )
                .await
                .map_err(|e| service::postgres_tls::causes(&e))
        };
        if let Err(error) = sent.await {
            tracing::warn!(%error, %issuance, "could not announce a release to long-polls");
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the listener of this process: one connection with the pool's settings (TLS
/// included), `LISTEN` on [`CHANNEL`], reconnecting with backoff, until [`Outcomes::stop`] or
/// until the `Outcomes` is dropped.
pub fn spawn_listener(outcomes: &Outcomes, postgres: service::PostgresArgs) {
    let registry = outcomes.registry.clone();
    let mut stop = outcomes.stop.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            () = listen(&registry, &postgres) => {}
            // Stopped, or the app is gone (the sender dropped).
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    });
}

/// Listens for ever: a session per connection, every waiter woken after each new `LISTEN`.
async fn listen(registry: &Registry, postgres: &service::PostgresArgs) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = session(registry, postgres, &mut backoff).await;
        registry.reconnects.inc();
        let delay = backoff.next_delay();
        tracing::warn!(
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "the issuance outcome listener lost PostgreSQL; long-polls wait out their time until it is back"
        );
        tokio::time::sleep(delay).await;
    }
}

/// One connection: connects, listens, then wakes waiters by id until the connection fails.
/// Returns why it ended.
async fn session(
    registry: &Registry,
    postgres: &service::PostgresArgs,
    backoff: &mut Backoff,
) -> String {
    let settings = match postgres.settings() {
        Ok(settings) => settings,
        Err(e) => return e.to_string(),
    };
    let connector = match settings.connector() {
        Ok(connector) => connector,
        Err(e) => return e,
    };
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_BOUND, settings.config.connect(connector)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return service::postgres_tls::causes(&e),
            Err(_) => return "connecting timed out".to_owned(),
        };
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    let mut quiet = tokio::time::interval(PING_EVERY);
    quiet.reset();
    loop {
        let mut due = false;
        let step = tokio::select! {
            result = &mut listen, if !listening => match result {
                Ok(()) => {
                    listening = true;
                    backoff.reset();
                    let woken = registry.wake_all();
                    tracing::info!(woken, "listening for issuance outcomes");
                    Ok(())
                }
                Err(e) => Err(service::postgres_tls::causes(&e)),
            },
            message = messages.next() => {
                quiet.reset();
                heard(registry, message)
            }
            _ = quiet.tick(), if listening => {
                due = true;
                Ok(())
            }
        };
        let step = match step {
            Ok(()) if due => ping(registry, &client, &mut messages).await,
            other => other,
        };
        if let Err(error) = step {
            return error;
        }
    }
}

/// A message of the connection: a notification wakes its ids; the connection's error or end is
/// the session's end.
fn heard(
    registry: &Registry,
    message: Option<Result<AsyncMessage, tokio_postgres::Error>>,
) -> Result<(), String> {
    match message {
        Some(Ok(AsyncMessage::Notification(note))) => {
            registry.wake(note.payload());
            Ok(())
        }
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(service::postgres_tls::causes(&e)),
        None => Err("the connection closed".to_owned()),
    }
}

/// A round trip on a quiet connection, within [`CONNECT_BOUND`]; the connection keeps being
/// driven (and notifications handled) meanwhile, since the answer comes through it.
async fn ping<S>(
    registry: &Registry,
    client: &tokio_postgres::Client,
    messages: &mut S,
) -> Result<(), String>
where
    S: futures_util::Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Unpin,
{
    // `LISTEN` again: a no-op round trip, and the connection keeps showing what it is for.
    let statement = format!("LISTEN {CHANNEL}");
    let ping = client.batch_execute(&statement);
    tokio::pin!(ping);
    let deadline = tokio::time::sleep(CONNECT_BOUND);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            result = &mut ping => {
                return result.map_err(|e| service::postgres_tls::causes(&e));
            }
            message = messages.next() => heard(registry, message)?,
            () = &mut deadline => return Err("no answer to the periodic check".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::ids::CampaignId;

    fn outcomes(max: usize) -> Outcomes {
        Outcomes::new(
            max,
            Gauge::default(),
            Counter::default(),
            Counter::default(),
        )
    }

    #[tokio::test]
    async fn a_wake_up_before_the_wait_is_kept_and_only_named_ids_wake() {
        let outcomes = outcomes(10);
        let campaign = CampaignId(uuid::Uuid::now_v7());
        let (a, b) = (IssuanceId::new(campaign), IssuanceId::new(campaign));
        let waiter_a = outcomes.register(a).unwrap();
        let waiter_a2 = outcomes.register(a).unwrap();
        let waiter_b = outcomes.register(b).unwrap();
        assert_eq!(outcomes.wake(&format!("not-an-id{SEPARATOR}{a}")), 2);
        let soon = Duration::from_millis(50);
        tokio::time::timeout(soon, waiter_a.woken()).await.unwrap();
        tokio::time::timeout(soon, waiter_a2.woken()).await.unwrap();
        assert!(tokio::time::timeout(soon, waiter_b.woken()).await.is_err());
        assert_eq!(outcomes.registry.wake_all(), 3);
        tokio::time::timeout(soon, waiter_b.woken()).await.unwrap();
    }

    #[tokio::test]
    async fn dropped_waiters_leave_nothing_and_the_budget_bounds_them() {
        let outcomes = outcomes(2);
        let id = IssuanceId::new(CampaignId(uuid::Uuid::now_v7()));
        let first = outcomes.register(id).unwrap();
        let second = outcomes.register(id).unwrap();
        assert!(outcomes.register(id).is_none(), "over budget");
        assert_eq!((outcomes.parked(), outcomes.registry.parked.get()), (2, 2));
        drop(first);
        drop(second);
        assert_eq!((outcomes.parked(), outcomes.registry.parked.get()), (0, 0));
        assert!(lock(&outcomes.registry.waiters).is_empty());
        assert_eq!(outcomes.wake(&id.to_string()), 0);
        outcomes.stop();
        assert!(outcomes.register(id).is_none(), "stopping");
        tokio::time::timeout(Duration::from_millis(50), outcomes.stopped())
            .await
            .unwrap();
    }
}
