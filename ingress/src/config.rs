//! The ingress configuration (see `service::config` for where values come from), validated
//! before start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The HS256 secret of a development stack (`dev/up`): public, so refused in production.
pub const DEVELOPMENT_SECRET: &str = "dev-secret";

/// Every setting of the ingress. `--help` lists each with its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server binds.
    #[arg(long, env = "INGRESS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the operations listener: `/metrics` (Prometheus), `/healthz` and `/readyz`.
    /// Keep it off the load balancer; the public listener has no `/metrics`.
    #[arg(long, env = "INGRESS_OPS_LISTEN", default_value = "127.0.0.1:9091")]
    pub ops_listen: SocketAddr,

    /// Threads that run requests. Unset: one per CPU the process may use (its cgroup quota, as
    /// a pod's CPU limit sets it). With one, everything runs on one thread (no work stealing,
    /// fewer wake-ups: the least CPU per request, and a ceiling of one core).
    #[arg(long, env = "INGRESS_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// How often the readiness check (Redis, PostgreSQL, the topic's Kafka metadata) runs in the
    /// background; `/readyz` answers from its last result and never calls a dependency itself.
    #[arg(long, env = "INGRESS_READY_CHECK_INTERVAL_MS", default_value_t = 2_000)]
    pub ready_check_interval_ms: u64,

    #[command(flatten)]
    pub redis: service::RedisArgs,

    /// How long one Redis command may take before the request fails with 503.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 1_000)]
    pub redis_timeout_ms: u64,

    #[command(flatten)]
    pub kafka: service::KafkaArgs,

    /// Topic of requested issuances.
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    pub topic_requested: String,

    // How often the event keys are re-read (`EVENT_KEYS_REFRESH_MS`); events are signed with
    // the newest active one.
    #[command(flatten)]
    pub event_keys: service::event_keys::Args,

    /// The consumer group persisting the requested topic; the operator view shows its lag.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "coupon-persister")]
    pub consumer_group: String,

    /// Upper bound on the wait for Kafka's acknowledgement (librdkafka `message.timeout.ms`).
    /// Past it the request answers 503 and the reservation is kept for roll-forward.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 5_000)]
    pub kafka_message_timeout_ms: u64,

    /// librdkafka `linger.ms`: a short wait lets one produce request carry many events.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 2)]
    pub kafka_linger_ms: u64,

    /// Extra time, past `KAFKA_MESSAGE_TIMEOUT_MS`, before an unconfirmed reservation is rolled
    /// forward by the sweeper (re-produced with the same issuance id).
    #[arg(long, env = "JOURNAL_GRACE_MS", default_value_t = 2_000)]
    pub journal_grace_ms: u64,

    /// How often the sweeper looks for overdue journal entries.
    #[arg(long, env = "SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub sweep_interval_ms: u64,

    /// How often the live campaigns are re-read from PostgreSQL: their settings re-applied to
    /// the gate, each checked for lost admissions (fenced if so), their keys' expiry set.
    #[arg(long, env = "RECONCILE_INTERVAL_MS", default_value_t = 5_000)]
    pub reconcile_interval_ms: u64,

    /// How long a campaign's gate keys stay in Redis after its end (at least a minute).
    #[arg(long, env = "GATE_KEY_RETENTION_MS", default_value_t = 86_400_000,
          value_parser = clap::value_parser!(u64).range(60_000..))]
    pub gate_key_retention_ms: u64,

    /// PostgreSQL, used by operator routes and issuance status reads (never by the issuance path).
    #[command(flatten)]
    pub postgres: service::PostgresArgs,

    /// Largest number of pooled PostgreSQL connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: usize,

    /// HS256 secret shared with the token issuer, when no JWKS is set. In production it must be
    /// at least 32 bytes and not the development secret; in development it defaults to
    /// `dev-secret`.
    #[arg(long, env = "JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// JWKS file with the RS256/ES256 public keys of the identity provider (production).
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// JWKS URL of the identity provider (production; instead of `JWT_JWKS_FILE`): `https://`,
    /// or `http://` to localhost only. Fetched at start, on an unknown key id, and every
    /// `JWT_JWKS_REFRESH_SECS`.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the key set at `JWT_JWKS_URL` is fetched again, in seconds.
    #[arg(long, env = "JWT_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,

    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 30).
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,

    /// Required `iss` of every token, when set (a token without it is refused).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of every token, when set (a token without it is refused).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim that names a caller's role (a string, or an array of strings).
    #[arg(long, env = "JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,

    /// The role claim's value for operators (the `/v1/admin` routes).
    #[arg(long, env = "JWT_ADMIN_ROLE", default_value = "admin")]
    pub jwt_admin_role: String,

    /// The role claim's value for the order service (redeem and refund).
    #[arg(long, env = "JWT_SERVICE_ROLE", default_value = "service")]
    pub jwt_service_role: String,

    /// The audience the order service's tokens carry instead of `JWT_AUDIENCE`, so a user's
    /// token can never act as the order service. In production, without it no token is
    /// accepted as the order service (redeem and refund answer 403).
    #[arg(long, env = "JWT_SERVICE_AUDIENCE")]
    pub jwt_service_audience: Option<String>,

    /// Least time between two loads of the key set (`JWT_JWKS_FILE` or `JWT_JWKS_URL`) prompted
    /// by unknown key ids.
    #[arg(
        long,
        env = "JWT_JWKS_REFRESH_MIN_INTERVAL_MS",
        default_value_t = 30_000
    )]
    pub jwks_refresh_min_interval_ms: u64,

    /// Largest request head (request line and headers), in bytes; larger is answered 431.
    #[arg(long, env = "INGRESS_MAX_HEADER_BYTES", default_value_t = 8_192)]
    pub max_header_bytes: usize,

    /// Most header fields in one request; more is answered 431.
    #[arg(long, env = "INGRESS_MAX_HEADERS", default_value_t = 48)]
    pub max_headers: usize,

    /// Longest wait for a complete request head, from the moment the server waits for one: it
    /// bounds slow-header clients and idle keep-alive connections alike. The default stays above
    /// an AWS ALB's 60 s idle timeout, so the load balancer always closes idle connections first.
    #[arg(long, env = "INGRESS_HEADER_READ_TIMEOUT_MS", default_value_t = 75_000)]
    pub header_read_timeout_ms: u64,

    /// Longest time one request may take once its head arrived; past it the answer is 503 (a
    /// reservation it made stays journaled and is rolled forward).
    #[arg(long, env = "INGRESS_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,

    /// Most open client connections; further connections are closed at once.
    #[arg(long, env = "INGRESS_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Most requests handled at once; beyond it requests are answered 503 at once (load
    /// shedding) instead of queueing.
    #[arg(long, env = "INGRESS_MAX_IN_FLIGHT", default_value_t = 8_192)]
    pub max_in_flight: usize,

    /// Requests per second one user (`sub`) may make, sustained; 0 turns the limit off.
    #[arg(long, env = "RATE_LIMIT_USER_PER_SEC", default_value_t = 5)]
    pub rate_limit_user_per_sec: u32,

    /// Requests one user may make in a burst above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_USER_BURST", default_value_t = 10)]
    pub rate_limit_user_burst: u32,

    /// Requests per second one client address may make, sustained; 0 (the default) turns the
    /// limit off. Mobile carriers put many users behind one address: size it for that.
    #[arg(long, env = "RATE_LIMIT_IP_PER_SEC", default_value_t = 0)]
    pub rate_limit_ip_per_sec: u32,

    /// Requests one client address may make in a burst above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_IP_BURST", default_value_t = 200)]
    pub rate_limit_ip_burst: u32,

    /// Peers (addresses or CIDR blocks, comma-separated) whose `X-Forwarded-For` names the
    /// client, e.g. the load balancer's subnets. Other peers are the client themselves.
    #[arg(long, env = "INGRESS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INGRESS_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,

    /// After SIGTERM, how long the ingress keeps serving with `/readyz` failing, so load
    /// balancers take it out of rotation before it stops accepting connections.
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = 5_000)]
    pub shutdown_delay_ms: u64,

    /// Most public campaign reads (`GET /v1/campaigns`, `GET /v1/campaigns/{id}`) handled at
    /// once. They have this budget of their own and never take `INGRESS_MAX_IN_FLIGHT`'s
    /// permits, so a flood of them cannot shed issuance; beyond it they are answered 503 at once.
    #[arg(
        long,
        env = "INGRESS_MAX_PUBLIC_READS",
        default_value_t = 1_024,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub max_public_reads: usize,

    /// `ISSUANCE_WAIT_MAX_SECS` and `ISSUANCE_WAITERS_MAX` (`issue::outcomes`).
    #[command(flatten)]
    pub waits: crate::issue::outcomes::WaitArgs,

    /// `CORS_ALLOWED_ORIGINS` and `CORS_MAX_AGE_SECS` (`http::cors`).
    #[command(flatten)]
    pub cors: crate::http::cors::CorsArgs,

    #[command(flatten)]
    pub common: service::Common,
}

impl service::Validate for Config {
    /// Lists every problem at once, naming the setting, never its value.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.common.problems(&mut problems);
        self.kafka.problems(&mut problems);
        self.http_problems(&mut problems);
        self.cors.problems(&mut problems);
        self.auth_problems(&mut problems);
        self.dependency_problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Config {
    /// The listener, its limits and the shutdown delay.
    fn http_problems(&self, problems: &mut Vec<String>) {
        if self.consumer_group.is_empty() {
            problems.push("CONSUMER_GROUP must not be empty".to_owned());
        }
        if !(1_024..=65_536).contains(&self.max_header_bytes) {
            problems.push("INGRESS_MAX_HEADER_BYTES must be between 1024 and 65536".to_owned());
        }
        if !(8..=200).contains(&self.max_headers) {
            problems.push("INGRESS_MAX_HEADERS must be between 8 and 200".to_owned());
        }
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            problems
                .push("INGRESS_HEADER_READ_TIMEOUT_MS must be between 100 and 600000".to_owned());
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            problems.push("INGRESS_REQUEST_TIMEOUT_MS must be between 100 and 600000".to_owned());
        }
        if self.request_timeout_ms <= self.kafka_message_timeout_ms + 1_000 {
            problems.push(
                "INGRESS_REQUEST_TIMEOUT_MS must exceed KAFKA_MESSAGE_TIMEOUT_MS + 1000 (the wait for Kafka's answer)"
                    .to_owned(),
            );
        }
        if self.max_connections == 0 || self.max_in_flight == 0 {
            problems.push(
                "INGRESS_MAX_CONNECTIONS and INGRESS_MAX_IN_FLIGHT must be positive".to_owned(),
            );
        }
        if self.rate_limit_user_per_sec > 0 && self.rate_limit_user_burst == 0 {
            problems.push(
                "RATE_LIMIT_USER_BURST must be positive when the user limit is on".to_owned(),
            );
        }
        if self.rate_limit_ip_per_sec > 0 && self.rate_limit_ip_burst == 0 {
            problems.push(
                "RATE_LIMIT_IP_BURST must be positive when the address limit is on".to_owned(),
            );
        }
        if self.shutdown_delay_ms > 300_000 {
            problems.push("SHUTDOWN_DELAY_MS must be at most 300000".to_owned());
        }
        if !(64..=1 << 20).contains(&self.max_body_bytes) {
            problems.push("INGRESS_MAX_BODY_BYTES must be between 64 and 1048576".to_owned());
        }
        if self.ops_listen == self.listen && self.listen.port() != 0 {
            problems.push("INGRESS_OPS_LISTEN must differ from INGRESS_LISTEN".to_owned());
        }
        if !(100..=60_000).contains(&self.ready_check_interval_ms) {
            problems
                .push("INGRESS_READY_CHECK_INTERVAL_MS must be between 100 and 60000".to_owned());
        }
    }

    /// Tokens and where their keys come from.
    fn auth_problems(&self, problems: &mut Vec<String>) {
        let empty = |v: &Option<String>| v.as_deref() == Some("");
        if empty(&self.jwt_issuer) || empty(&self.jwt_audience) || empty(&self.jwt_service_audience)
        {
            problems.push(
                "JWT_ISSUER, JWT_AUDIENCE and JWT_SERVICE_AUDIENCE must not be empty when set"
                    .to_owned(),
            );
        }
        if self.jwt_role_claim.is_empty()
            || self.jwt_admin_role.is_empty()
            || self.jwt_service_role.is_empty()
            || self.jwt_admin_role == self.jwt_service_role
        {
            problems.push(
                "JWT_ROLE_CLAIM, JWT_ADMIN_ROLE and JWT_SERVICE_ROLE must not be empty, and the two roles must differ"
                    .to_owned(),
            );
        }
        if self.jwt_leeway_secs > 30 {
            problems.push("JWT_LEEWAY_SECS must be at most 30".to_owned());
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            problems.push("JWT_JWKS_FILE and JWT_JWKS_URL exclude each other".to_owned());
        }
        if let Some(url) = &self.jwks_url
            && !crate::http::auth::jwks_url_is_allowed(url)
        {
            problems.push("JWT_JWKS_URL must be https:// (or http:// to localhost)".to_owned());
        }
        if !(1..=86_400).contains(&self.jwks_refresh_secs) {
            problems.push("JWT_JWKS_REFRESH_SECS must be between 1 and 86400".to_owned());
        }
        if self.common.profile.is_production() {
            self.production_auth_problems(problems);
        } else if self.jwks_file.is_none()
            && self.jwks_url.is_none()
            && self.jwt_hs256_secret.as_ref().is_some_and(|s| s.len() < 8)
        {
            problems.push("JWT_HS256_SECRET must be at least 8 bytes".to_owned());
        }
    }

    /// What the production profile refuses and development allows: the development secret, a
    /// short secret, no key source, tokens not bound to an issuer and an audience.
    fn production_auth_problems(&self, problems: &mut Vec<String>) {
        let jwks = self.jwks_file.is_some() || self.jwks_url.is_some();
        match &self.jwt_hs256_secret {
            _ if jwks => {}
            None => problems.push(
                "no token key source: set JWT_JWKS_URL or JWT_JWKS_FILE (or JWT_HS256_SECRET); COUPON_ENV=development allows the development secret"
                    .to_owned(),
            ),
            Some(secret) if secret == DEVELOPMENT_SECRET || secret.len() < 32 => problems.push(
                "JWT_HS256_SECRET must be at least 32 bytes and not the development secret in production (COUPON_ENV=development allows it)"
                    .to_owned(),
            ),
            Some(_) => {}
        }
        if self.jwt_issuer.is_none() {
            problems.push(
                "JWT_ISSUER must be set in production (COUPON_ENV=development allows tokens without iss)"
                    .to_owned(),
            );
        }
        if self.jwt_audience.is_none() {
            problems.push(
                "JWT_AUDIENCE must be set in production (COUPON_ENV=development allows tokens without aud)"
                    .to_owned(),
            );
        }
    }

    /// The HS256 secret in use when no JWKS is set: the configured one, or in development the
    /// development secret.
    pub fn hs256_secret(&self) -> &str {
        self.jwt_hs256_secret
            .as_deref()
            .unwrap_or(DEVELOPMENT_SECRET)
    }

    /// Redis, Kafka, PostgreSQL and the journal.
    fn dependency_problems(&self, problems: &mut Vec<String>) {
        if !(100..=300_000).contains(&self.kafka_message_timeout_ms) {
            problems.push("KAFKA_MESSAGE_TIMEOUT_MS must be between 100 and 300000".to_owned());
        }
        if !(100..=60_000).contains(&self.sweep_interval_ms) {
            problems.push("SWEEP_INTERVAL_MS must be between 100 and 60000".to_owned());
        }
        if !(100..=3_600_000).contains(&self.reconcile_interval_ms) {
            problems.push("RECONCILE_INTERVAL_MS must be between 100 and 3600000".to_owned());
        }
        if self.journal_grace_ms > 600_000 {
            problems.push("JOURNAL_GRACE_MS must be at most 600000".to_owned());
        }
        if self.redis_timeout_ms == 0 {
            problems.push("REDIS_TIMEOUT_MS must be positive".to_owned());
        }
        if self.topic_requested.is_empty() {
            problems.push("TOPIC_ISSUANCE_REQUESTED must not be empty".to_owned());
        }
        if self.database_pool_size == 0 {
            problems.push("DATABASE_POOL_SIZE must be positive".to_owned());
        }
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// The gate's Redis: `REDIS_URL`, `REDIS_CA_FILE`, `REDIS_CLUSTER`.
    pub fn redis_endpoint(&self) -> gate::Endpoint {
        gate::Endpoint {
            url: self.redis.url.clone(),
            ca_file: self.redis.ca_file.clone(),
            cluster: self.redis.cluster,
        }
    }

    /// How long after admission a reservation may stay unconfirmed before it is rolled forward:
    /// past it, the ingress that admitted it has certainly given up waiting for Kafka.
    pub fn journal_deadline(&self) -> Duration {
        Duration::from_millis(self.kafka_message_timeout_ms + self.journal_grace_ms)
    }
}

impl Config {
    /// Parses and validates settings from arguments (first item is the program name), the
    /// environment and files, as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Self, service::config::Failure>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        service::config::parse(clap::Command::new("coupon-ingress"), args)
    }
}
