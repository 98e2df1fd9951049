//! The HTTP ingress of the coupon pipeline.
//!
//! # Layout
//! - [`config`]: every setting, from the environment and the command line.
//! - [`auth`]: bearer token verification (HS256 in development, RS256/ES256 from a JWKS file).
//! - [`publish`]: the idempotent Kafka producer of `IssuanceRequested` events.
//! - [`journal`]: clearing confirmed reservations, rolling overdue ones forward, re-seeding.
//! - [`issuances`], [`coupons`] and [`campaigns`]: the user and operator routes.
//! - [`public`]: public campaign reads from a per-process cache.
//! - [`routes`]: HTTP routing, body limits, load shedding, the request deadline, problem
//!   responses.
//! - [`limits`]: rate limits per user and per client address, the client address.
//! - [`metrics`]: the Prometheus metrics served on `/metrics`.
//!
//! [`App::build`] connects to the dependencies; [`run`] serves a bound listener until the
//! shutdown signal, keeps serving (not ready) for the shutdown delay, then drains in-flight
//! requests and flushes the producer within the shutdown timeout.

pub mod auth;
pub mod campaigns;
pub mod config;
pub mod coupons;
pub mod issuances;
pub mod journal;
pub mod lag;
pub mod limits;
pub mod metrics;
pub mod paging;
pub mod problem;
pub mod public;
pub mod publish;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use config::Config;

/// Everything a request handler needs, shared by all connections.
pub struct App {
    pub config: Config,
    pub keys: auth::Keys,
    pub limits: Arc<limits::RateLimits>,
    /// Permits for requests being handled; none left means shed load (503).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub gate: gate::Gate,
    pub publisher: publish::Publisher,
    /// Reservations Kafka confirmed, on their way out of the journal.
    pub confirmations: journal::Confirmations,
    /// Operator routes and status reads only; the issuance path never waits on PostgreSQL.
    pub db: deadpool_postgres::Pool,
    /// False once shutdown begins, so load balancers stop sending new requests.
    pub ready: AtomicBool,
    pub metrics: metrics::Metrics,
    /// Public campaign reads, served from memory.
    pub public: public::Cache,
    /// The consumer group's lag, for the operator view.
    pub lag: lag::Lag,
}

impl App {
    /// Connects to Redis, Kafka and PostgreSQL. Fails when Redis or the topic is unreachable.
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        service::tls::install();
        let expect = auth::Expectations {
            leeway_secs: config.jwt_leeway_secs,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        };
        let min_interval = Duration::from_millis(config.jwks_refresh_min_interval_ms);
        let keys = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => auth::Keys::jwks_file(path, expect, min_interval)
                .context("loading JWT_JWKS_FILE")?,
            (None, Some(url)) => auth::Keys::jwks_url(url, expect, min_interval)
                .await
                .context("loading JWT_JWKS_URL")?,
            (None, None) => auth::Keys::hs256(config.jwt_hs256_secret.as_bytes(), expect),
        };
        let gate = gate::Gate::connect(
            &config.redis_url,
            &config.redis_key_prefix,
            config.redis_timeout(),
            config.journal_deadline(),
        )
        .await
        .context("connecting to REDIS_URL")?;
        let publisher = publish::Publisher::new(
            &config.kafka_brokers,
            &config.topic_requested,
            config.kafka_message_timeout_ms,
            config.kafka_linger_ms,
        )
        .context("creating the Kafka producer")?;
        publisher
            .check(Duration::from_secs(10))
            .await
            .context("looking up TOPIC_ISSUANCE_REQUESTED on KAFKA_BROKERS")?;
        let db = service::pg_pool(&config.database_url, config.database_pool_size)
            .context("DATABASE_URL")?;
        let lag = lag::Lag::new(
            &config.kafka_brokers,
            &config.consumer_group,
            &config.topic_requested,
        )
        .context("creating the Kafka lag reader")?;
        let confirmations = journal::Confirmations::spawn(gate.clone());
        let limits = limits::RateLimits::new(&config);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
        let app = Arc::new(App {
            limits,
            in_flight,
            config,
            keys,
            confirmations,
            gate,
            publisher,
            db,
            ready: AtomicBool::new(true),
            metrics: metrics::Metrics::new(),
            public: public::Cache::default(),
            lag,
        });
        if app.keys.from_url() {
            // A key the identity provider withdrew stops verifying within the interval. The task
            // ends with the app.
            let weak = Arc::downgrade(&app);
            let every = Duration::from_secs(app.config.jwks_refresh_secs);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(app) = weak.upgrade() else { break };
                    app.keys.refresh().await;
                }
            });
        }
        Ok(app)
    }

    /// A pooled PostgreSQL connection, or 503.
    pub async fn db(&self) -> Result<deadpool_postgres::Object, problem::Problem> {
        self.db.get().await.map_err(|e| {
            tracing::warn!(error = %e, "no postgres connection");
            problem::Problem::Unavailable {
                detail: "the database is unavailable",
                retry_after_secs: 1,
            }
        })
    }
}

pub(crate) fn redis_unavailable() -> problem::Problem {
    problem::Problem::Unavailable {
        detail: "the reservation store is unavailable; retry",
        retry_after_secs: 1,
    }
}

/// Serves `listener` (and runs the journal sweeper) until `signal` completes. Then readiness
/// turns false while requests are still served for `SHUTDOWN_DELAY_MS` (load balancers take the
/// pod out of rotation meanwhile); then the listener closes, in-flight requests finish and the
/// producer is flushed so every answered event is on the broker, all within
/// `SHUTDOWN_TIMEOUT_MS`.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    signal: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(app.config.header_read_timeout_ms))
        .max_headers(app.config.max_headers)
        .max_header_size(app.config.max_header_bytes)
        .keep_alive(true);
    let connections = Arc::new(tokio::sync::Semaphore::new(app.config.max_connections));
    let (stop_sweeper, sweeper_stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(journal::sweep(app.clone(), sweeper_stopped));
    let delay = Duration::from_millis(app.config.shutdown_delay_ms);
    let stopping = async {
        signal.await;
        app.ready.store(false, Ordering::SeqCst);
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "shutdown: not ready, still serving"
        );
        tokio::time::sleep(delay).await;
    };
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    // At the connection limit: close at once rather than queue.
                    app.metrics.connections_refused.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let open = service::metrics::ConnectionGuard::open(&app.metrics.process.open_connections);
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(routes::handle(&app, request, peer).await) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(open);
                    drop(permit);
                });
            }
            () = &mut stopping => break,
        }
    }
    app.ready.store(false, Ordering::SeqCst);
    drop(listener);
    let _ = stop_sweeper.send(true);
    let bound = Duration::from_millis(app.config.common.shutdown_timeout_ms);
    let started = std::time::Instant::now();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(bound) => {
            tracing::warn!(timeout_ms = bound.as_millis() as u64, "in-flight requests did not finish in time");
        }
    }
    let _ = sweeper.await;
    app.confirmations.flush().await;
    let publisher = app.publisher.clone();
    let left = bound
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    tokio::task::spawn_blocking(move || publisher.flush(left))
        .await?
        .context("flushing the Kafka producer")?;
    Ok(())
}
