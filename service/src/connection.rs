//! The PostgreSQL and Redis connection settings every binary takes, declared once with their
//! environment names and local defaults. Kafka's are [`crate::kafka::KafkaArgs`].

/// The ledger.
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresArgs {
    /// PostgreSQL connection URL of the ledger.
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
}

impl PostgresArgs {
    /// A connection pool of at most `size` connections, each wait bounded by
    /// `DATABASE_POOL_WAIT_MS`. Connects lazily.
    pub fn pool(
        &self,
        size: usize,
    ) -> Result<deadpool_postgres::Pool, deadpool_postgres::CreatePoolError> {
        let wait = Some(std::time::Duration::from_millis(self.pool_wait_ms));
        let mut pool = deadpool_postgres::PoolConfig::new(size);
        pool.timeouts = deadpool_postgres::Timeouts {
            wait,
            create: wait,
            recycle: wait,
        };
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(self.url.clone());
        config.pool = Some(pool);
        config.create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
    }

    /// One connection, driven on its own task (operator commands).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
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
