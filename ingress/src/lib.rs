//! The HTTP ingress of the coupon pipeline: verifies the caller, admits a request in the gate
//! (Redis), produces its event to Kafka and answers 202; also the user's and the operators'
//! routes around it.
//!
//! # Layout
//! - [`config`]: every setting, from the environment and the command line.
//! - [`http`]: the edge: the accept loop ([`run`]), the route table and dispatch, bearer
//!   tokens, rate limits, pagination, problem responses, probes.
//! - [`issue`]: the issuance path: the handler (reserve, produce, answer), the idempotent
//!   producer, the sweeper that clears, rolls forward and re-seeds the journal, and the
//!   waiters of long-polls on an outcome (`outcomes`).
//! - [`campaigns`]: `store` (the ledger's campaigns with live figures), `admin` (operator
//!   routes), `public` (cached public reads).
//! - [`coupons`]: the user's coupons, redemption, refund, cancellation.
//! - [`lag`]: the consumer group's lag for the operator view.
//! - [`metrics`]: the Prometheus metrics.
//! - [`ops`]: the background readiness check and the operations listener (`/metrics`).
//!
//! The gate itself (Lua scripts, rules, reconciliation) is the `gate` crate. [`App::build`]
//! connects to the dependencies; [`run`] serves the bound public and operations listeners until
//! the shutdown signal.

pub mod campaigns;
pub mod config;
pub mod coupons;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod issue;
pub mod lag;
pub mod metrics;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;

pub use config::Config;
pub use http::server::run;

/// Everything a request handler needs, shared by all connections.
pub struct App {
    /// Every setting, validated at start.
    pub config: Config,
    /// Verifies bearer tokens (HS256 in development, RS256/ES256 from a JWKS file or URL).
    pub keys: http::auth::Keys,
    /// Rate limits per user and per client address.
    pub limits: Arc<http::limits::RateLimits>,
    /// Permits for requests being handled; none left means shed load (503).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Stock, holders and admissions in Redis: the one place that admits.
    pub gate: gate::Gate,
    /// The idempotent producer of requested issuances.
    pub publisher: issue::publish::Publisher,
    /// Reservations Kafka confirmed, on their way out of the journal.
    pub confirmations: issue::sweeper::Confirmations,
    /// Operator routes and status reads only; the issuance path never waits on PostgreSQL.
    pub db: deadpool_postgres::Pool,
    /// False once shutdown begins, so load balancers stop sending new requests.
    pub ready: AtomicBool,
    /// The last background dependency check, which `/readyz` answers from.
    pub readiness: ops::Readiness,
    /// What `/metrics` (on the operations listener) serves.
    pub metrics: metrics::Metrics,
    /// Public campaign reads, served from memory.
    pub public: campaigns::public::Cache,
    /// The consumer group's lag, for the operator view and the gate's recovery.
    pub lag: lag::Lag,
    /// Loss checks and re-seeding after Redis lost writes.
    pub recovery: issue::recovery::Recovery,
    /// Long-polls parked on an issuance's outcome, woken by this process's one listener.
    pub outcomes: issue::outcomes::Outcomes,
}

impl App {
    /// Connects to Redis, Kafka and PostgreSQL. Fails when Redis or the topic is unreachable.
    pub async fn build(config: Config) -> anyhow::Result<Arc<App>> {
        service::tls::install();
        let keys = http::auth::Keys::load(&config).await?;
        // PostgreSQL's default sslmode follows the profile (COUPON_ENV).
        let postgres = config.postgres.clone().in_profile(config.common.profile);
        let gate = gate::Gate::connect(
            &config.redis_endpoint(),
            &config.redis.key_prefix,
            config.redis_timeout(),
            config.journal_deadline(),
        )
        .await
        .context("connecting to REDIS_URL")?
        .with_retention(Duration::from_millis(config.gate_key_retention_ms));
        // Issuance answers 503 until the event keys are read (retried every second).
        let event_keys =
            service::event_keys::EventKeys::start(postgres.clone(), &config.event_keys).await;
        let publisher = issue::publish::Publisher::new(
            &config.kafka,
            &config.topic_requested,
            config.kafka_message_timeout_ms,
            config.kafka_linger_ms,
            event_keys,
        )
        .context("creating the Kafka producer")?;
        // The error names what the brokers reported (a refused certificate or password), which
        // the producer's own look-up would only see as a timeout.
        let topic = Some(config.topic_requested.as_str());
        config
            .kafka
            .check("coupon-ingress-check", topic, Duration::from_secs(10))
            .await
            .context("looking up TOPIC_ISSUANCE_REQUESTED on KAFKA_BROKERS")?;
        let db = postgres
            .pool(config.database_pool_size)
            .context("DATABASE_URL")?;
        let lag = lag::Lag::new(
            &config.kafka,
            &config.consumer_group,
            &config.topic_requested,
        )
        .context("creating the Kafka lag reader")?;
        let confirmations = issue::sweeper::Confirmations::spawn(gate.clone());
        let limits = http::limits::RateLimits::new(&config);
        let public =
            campaigns::public::Cache::new(config.max_public_reads, config.database_pool_size);
        let metrics = metrics::Metrics::new();
        let outcomes = issue::outcomes::Outcomes::start(&config.waits, &metrics, postgres);
        let app = Arc::new(App {
            limits,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
            keys,
            confirmations,
            gate,
            publisher,
            db,
            ready: AtomicBool::new(true),
            readiness: ops::Readiness::default(),
            metrics,
            public,
            lag,
            recovery: issue::recovery::Recovery::default(),
            outcomes,
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
    pub async fn db(&self) -> Result<deadpool_postgres::Object, http::problem::Problem> {
        Ok(self.db.get().await?)
    }
}
