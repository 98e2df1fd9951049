//! The operations side of the ingress: the readiness check that runs in the background (its
//! last result is what `/readyz` answers, on either listener), and the operations listener
//! (`INGRESS_OPS_LISTEN`: `/metrics`, `/healthz`, `/readyz`), served by `service::ops` as the
//! consumer's is. Nothing here is reachable through the public listener except `/readyz`'s
//! cached answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::App;

/// Longest wait for one dependency in one check.
const CHECK_BOUND: Duration = Duration::from_secs(2);

/// The last result of the dependency check; probes read it and never call a dependency.
#[derive(Debug)]
pub struct Readiness {
    /// `None` while Redis and Kafka answered the last check; else why not.
    failure: Mutex<Option<&'static str>>,
}

impl Default for Readiness {
    /// Ready: `App::build` has just reached Redis and the topic; the first check runs as the
    /// server starts.
    fn default() -> Self {
        Readiness {
            failure: Mutex::new(None),
        }
    }
}

impl Readiness {
    fn set(&self, result: Result<(), &'static str>) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let now = result.err();
        if *failure != now {
            match now {
                Some(reason) => tracing::warn!(reason, "not ready"),
                None => tracing::info!("ready again"),
            }
        }
        *failure = now;
    }

    fn get(&self) -> Result<(), &'static str> {
        match *self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Whether the ingress takes traffic: not shutting down, and the last check found Redis, the
/// topic's Kafka metadata and an event key to sign with. Reads memory only.
pub fn ready(app: &App) -> Result<(), &'static str> {
    if !app.ready.load(Ordering::SeqCst) {
        return Err("shutting down");
    }
    app.readiness.get()
}

/// Checks the dependencies now, then every `INGRESS_READY_CHECK_INTERVAL_MS` after the previous
/// check ended, until `stop`: at most one Kafka metadata request per interval, however many
/// probes arrive. At `stop` (the listener closed: shutdown) parked long-polls end too, each
/// answering the current state, so draining never waits out their time.
pub async fn refresh(app: Arc<App>, stop: watch::Receiver<bool>) {
    check_until(&app, stop).await;
    app.outcomes.stop();
}

async fn check_until(app: &Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.config.ready_check_interval_ms);
    loop {
        tokio::select! {
            result = check(app) => app.readiness.set(result),
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One check of Redis, Kafka (the requested topic's metadata) and PostgreSQL, each within
/// `CHECK_BOUND`. Readiness follows Redis and Kafka, the issuance path's dependencies; an
/// unreachable PostgreSQL shows in `coupon_dependency_up` but keeps the pod in rotation, since
/// issuance never waits on it and taking every pod out would turn a ledger outage into a total
/// one.
async fn check(app: &App) -> Result<(), &'static str> {
    let (redis, kafka, postgres) = tokio::join!(
        tokio::time::timeout(CHECK_BOUND, app.gate.ping()),
        app.publisher.check(CHECK_BOUND),
        tokio::time::timeout(CHECK_BOUND, postgres(app)),
    );
    let redis = matches!(redis, Ok(Ok(())));
    let kafka = kafka.is_ok();
    let postgres = matches!(postgres, Ok(true));
    app.metrics.readiness_checked(redis, kafka, postgres);
    if !redis {
        Err("redis is unreachable")
    } else if !kafka {
        Err("kafka is unreachable")
    } else if !app.publisher.can_sign() {
        // No event key read yet (PostgreSQL was unreachable at start): issuance answers 503.
        Err("no event signing key")
    } else {
        Ok(())
    }
}

async fn postgres(app: &App) -> bool {
    match app.db.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

/// Serves the operations listener until `stop` completes. Its connections hold the app weakly:
/// once the ingress stopped they answer 503 and hold none of its clients open.
pub fn serve(
    listener: TcpListener,
    app: &Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let probe = Arc::new(Probe(Arc::downgrade(app)));
    tokio::spawn(service::ops::serve(listener, probe, stop))
}

struct Probe(Weak<App>);

impl service::ops::Probe for Probe {
    fn ready(&self) -> Result<(), String> {
        let app = self.0.upgrade().ok_or("stopped")?;
        ready(&app).map_err(str::to_owned)
    }

    fn metrics(&self) -> String {
        self.0.upgrade().map(|app| render(&app)).unwrap_or_default()
    }
}

/// The Prometheus text exposition, with the figures read at scrape time set first.
pub fn render(app: &App) -> String {
    service::metrics::set_count(&app.metrics.producer_queue, app.publisher.queued());
    app.metrics
        .jwks_refreshes
        .set(i64::try_from(app.keys.refreshes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    app.metrics.render()
}
