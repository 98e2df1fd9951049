//! The PostgreSQL and Redis connection settings every binary takes, declared once with their
//! environment names and local defaults. Kafka's are [`crate::kafka::KafkaArgs`].

use crate::Profile;
use crate::postgres_tls::Settings;

/// The ledger. TLS follows libpq's `sslmode` and `sslrootcert` ([`crate::postgres_tls`]).
#[derive(Clone, clap::Args)]
pub struct PostgresArgs {
    /// PostgreSQL connection URL of the ledger. libpq's `sslmode` (`disable`, `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` may be given as query parameters.
    #[arg(
        id = "database_url",
        value_name = "DATABASE_URL",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/coupon"
    )]
    pub url: String,

    /// Longest wait for a pooled PostgreSQL connection, in milliseconds: for a free one, and
    /// again for a new one to connect. Past it the caller fails at once (the ingress answers
    /// 503 with `Retry-After`, the consumer retries with backoff) instead of queueing.
    #[arg(
        id = "database_pool_wait_ms",
        value_name = "DATABASE_POOL_WAIT_MS",
        long = "database-pool-wait-ms",
        env = "DATABASE_POOL_WAIT_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub pool_wait_ms: u64,

    /// TLS to PostgreSQL when DATABASE_URL has no `sslmode`: `disable` (plaintext), `require`
    /// (encrypted, the certificate not verified), `verify-ca` (chain), `verify-full` (chain and
    /// host name). Unset: `verify-full` in production, `disable` with COUPON_ENV=development.
    /// `prefer` and `allow` are refused.
    #[arg(
        id = "pgsslmode",
        value_name = "PGSSLMODE",
        long = "pgsslmode",
        env = "PGSSLMODE"
    )]
    pub sslmode: Option<String>,

    /// PEM file of the CA certificates that sign the server's certificate (for RDS, its
    /// bundle), when DATABASE_URL has no `sslrootcert`. Unset or `system`: the system's roots.
    #[arg(
        id = "pgsslrootcert",
        value_name = "PGSSLROOTCERT",
        long = "pgsslrootcert",
        env = "PGSSLROOTCERT"
    )]
    pub sslrootcert: Option<String>,

    /// The binary's profile (`COUPON_ENV`), which picks the default `sslmode`: set by the binary
    /// with [`PostgresArgs::in_profile`]; production when not.
    #[arg(skip)]
    pub profile: Profile,
}

/// Why PostgreSQL could not be used. Never holds the URL (it may carry a password).
#[derive(Debug)]
pub enum PostgresError {
    /// `DATABASE_URL`, `PGSSLMODE` or `PGSSLROOTCERT` cannot be used.
    Settings(String),
    /// Connecting (TLS included) or authenticating failed.
    Connect(tokio_postgres::Error),
}

impl std::fmt::Display for PostgresError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostgresError::Settings(problem) => write!(f, "PostgreSQL settings: {problem}"),
            // tokio-postgres keeps the cause (the TLS or server error) in its source.
            PostgresError::Connect(error) => {
                write!(f, "PostgreSQL: {}", crate::postgres_tls::causes(error))
            }
        }
    }
}

impl std::error::Error for PostgresError {}

impl std::fmt::Debug for PostgresArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresArgs")
            .field("url", &crate::postgres_tls::redacted(&self.url))
            .field("pool_wait_ms", &self.pool_wait_ms)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("profile", &self.profile)
            .finish()
    }
}

impl PostgresArgs {
    /// These settings in `profile` (the binary's `COUPON_ENV`).
    pub fn in_profile(mut self, profile: Profile) -> PostgresArgs {
        self.profile = profile;
        self
    }

    /// The connection settings read from the URL, the environment's `PGSSLMODE` and
    /// `PGSSLROOTCERT`, and the profile's default.
    pub fn settings(&self) -> Result<Settings, PostgresError> {
        Settings::resolve(
            &self.url,
            self.sslmode.as_deref(),
            self.sslrootcert.as_deref(),
            self.profile,
        )
        .map_err(PostgresError::Settings)
    }

    /// The settings and their TLS connector, with a warning (once per process) when the
    /// server's certificate goes unverified.
    fn tls(&self) -> Result<(Settings, crate::postgres_tls::Connector), PostgresError> {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let settings = self.settings()?;
        let connector = settings.connector().map_err(PostgresError::Settings)?;
        if settings.unverified() {
            WARNED.call_once(|| {
                tracing::warn!(
                    "PostgreSQL sslmode=require: encrypted, but the server's certificate is not \
                     verified (verify-full with sslrootcert verifies it)"
                );
            });
        }
        Ok((settings, connector))
    }

    /// A connection pool of at most `size` connections, each wait bounded by
    /// `DATABASE_POOL_WAIT_MS`. Connects lazily; reads `sslrootcert` now.
    pub fn pool(&self, size: usize) -> Result<deadpool_postgres::Pool, PostgresError> {
        let (settings, connector) = self.tls()?;
        tracing::info!(tls = %settings.describe(), "PostgreSQL pool");
        let wait = Some(std::time::Duration::from_millis(self.pool_wait_ms));
        let mut pool = deadpool_postgres::PoolConfig::new(size);
        pool.timeouts = deadpool_postgres::Timeouts {
            wait,
            create: wait,
            recycle: wait,
        };
        let manager = deadpool_postgres::Manager::from_config(
            settings.config,
            connector,
            deadpool_postgres::ManagerConfig::default(),
        );
        deadpool_postgres::Pool::builder(manager)
            .config(pool)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PostgresError::Settings(format!("the connection pool: {e}")))
    }

    /// One connection, driven on its own task (operator commands).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PostgresError> {
        let (settings, connector) = self.tls()?;
        let (client, connection) = settings
            .config
            .connect(connector)
            .await
            .map_err(PostgresError::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }
}

/// The gate.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis holding stock, holders and admissions (the gate).
    #[arg(
        id = "redis_url",
        value_name = "REDIS_URL",
        long = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub url: String,

    /// Prefix of every Redis key, so several deployments (or test runs) share one Redis.
    #[arg(
        id = "redis_key_prefix",
        value_name = "REDIS_KEY_PREFIX",
        long = "redis-key-prefix",
        env = "REDIS_KEY_PREFIX",
        default_value = "coupon:"
    )]
    pub key_prefix: String,

    /// PEM bundle of the certificate authorities a `rediss://` REDIS_URL must chain to (a
    /// private CA), instead of the system's roots. Requires `rediss://`.
    #[arg(
        id = "redis_ca_file",
        value_name = "REDIS_CA_FILE",
        long = "redis-ca-file",
        env = "REDIS_CA_FILE"
    )]
    pub ca_file: Option<std::path::PathBuf>,

    /// Redis Cluster (ElastiCache cluster mode): REDIS_URL names one or more seed nodes,
    /// comma-separated, and each command goes to the master owning its keys' slot.
    #[arg(
        id = "redis_cluster",
        value_name = "REDIS_CLUSTER",
        long = "redis-cluster",
        env = "REDIS_CLUSTER",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub cluster: bool,
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    /// A binary takes all three connections at once: their argument ids must not clash.
    #[test]
    fn the_connection_settings_combine_in_one_command() {
        let command = crate::KafkaArgs::augment_args(super::RedisArgs::augment_args(
            super::PostgresArgs::augment_args(Command::new("every-connection")),
        ));
        command.debug_assert();
    }
}
