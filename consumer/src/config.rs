//! The consumer configuration (see `service::config` for where values come from), validated
//! before start.

/// Shortest retention of published outbox rows and delivered notifications: a minute.
pub const MIN_RETENTION_SECS: u64 = 60;
/// Longest retention short of forever (0): ten years.
pub const MAX_RETENTION_SECS: u64 = 10 * 365 * 86_400;

/// Every setting of the consumer. `--help` lists each with its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: service::KafkaArgs,

    /// Consumer group id; every pod of one deployment shares it.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "coupon-persister")]
    pub group_id: String,

    /// Topic of requested issuances.
    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    pub topic_requested: String,

    // How often the event keys are re-read (`EVENT_KEYS_REFRESH_MS`); a record signed with a
    // key id not yet known triggers one more read.
    #[command(flatten)]
    pub event_keys: service::event_keys::Args,

    /// Dead-letter topic for records that cannot be decoded.
    #[arg(long, env = "TOPIC_ISSUANCE_DEAD_LETTER", default_value = schema::topics::ISSUANCE_DEAD_LETTER)]
    pub topic_dead_letter: String,

    /// Topic of issued coupons, for downstream teams (published by the outbox relay).
    #[arg(long, env = "TOPIC_COUPON_ISSUED", default_value = schema::topics::COUPON_ISSUED)]
    pub topic_issued: String,

    /// Topic of campaign lifecycle events (opened, sold out, closed), published by the relay.
    #[arg(long, env = "TOPIC_CAMPAIGN_EVENTS", default_value = schema::topics::CAMPAIGN_EVENTS)]
    pub topic_campaign_events: String,

    /// Run the outbox relay in this process (`true`/`false`); every pod may run one.
    #[arg(long, env = "OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay: bool,

    /// Most outbox rows one relay round publishes.
    #[arg(long, env = "OUTBOX_BATCH", default_value_t = 500)]
    pub outbox_batch: usize,

    /// How long the relay waits before looking again when the outbox was empty, in ms.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 100)]
    pub outbox_poll_ms: u64,

    /// How long published `coupon.issued` outbox rows and delivered webhook notifications are
    /// kept, in seconds (default 7 days), before the purge deletes them; 0 keeps them forever.
    /// Unpublished rows, campaign events, pending and dead notifications are never purged.
    #[arg(long, env = "OUTBOX_RETENTION_SECS", default_value_t = 604_800)]
    pub outbox_retention_secs: u64,

    /// Most rows one purge statement deletes (each statement is its own short transaction).
    #[arg(long, env = "OUTBOX_PURGE_BATCH", default_value_t = 5_000)]
    pub outbox_purge_batch: usize,

    /// Webhook notified of every issued coupon: `https://` (`http://` only with
    /// `COUPON_ENV=development`), on a public address unless allowed below; redirects are not
    /// followed. Unset: no notifications.
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Non-public networks the webhook may reach all the same: CIDRs or addresses, separated by
    /// commas (e.g. `10.20.0.0/16`). Loopback, link-local (the cloud metadata address),
    /// unspecified, private, shared, multicast and reserved ranges are refused otherwise, for
    /// every address the host resolves to at connection time.
    #[arg(long, env = "WEBHOOK_ALLOWED_NETWORKS", default_value = "")]
    pub webhook_allowed_networks: String,

    /// Key of the `webhook-signature` HMAC-SHA256 of each delivery: `whsec_` and the base64 of
    /// the key (the Standard Webhooks form), or else the key's own bytes.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Longest wait for one delivery, in ms.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 5_000)]
    pub webhook_timeout_ms: u64,

    /// Attempts before a notification is dead-lettered.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,

    /// First retry delay ceiling, in ms; doubles per attempt (full jitter).
    #[arg(long, env = "WEBHOOK_BACKOFF_MS", default_value_t = 1_000)]
    pub webhook_backoff_ms: u64,

    /// Largest retry delay, in ms.
    #[arg(long, env = "WEBHOOK_BACKOFF_MAX_MS", default_value_t = 300_000)]
    pub webhook_backoff_max_ms: u64,

    /// Largest number of events written in one PostgreSQL transaction.
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,

    /// Longest wait for a batch to fill once its first event arrived, in milliseconds.
    #[arg(long, env = "CONSUMER_BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,

    /// librdkafka `session.timeout.ms`.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 6_000)]
    pub session_timeout_ms: u64,

    /// librdkafka `max.poll.interval.ms`; also the rebalance timeout of the group join.
    #[arg(long, env = "KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = 10_000)]
    pub max_poll_interval_ms: u64,

    #[command(flatten)]
    pub postgres: service::PostgresArgs,

    /// Largest number of pooled PostgreSQL connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 4)]
    pub database_pool_size: usize,

    /// Address of the operations listener: `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "CONSUMER_HTTP_LISTEN", default_value = "127.0.0.1:9090")]
    pub http_listen: std::net::SocketAddr,

    /// How often librdkafka reports statistics, the source of the per-partition lag metric.
    #[arg(long, env = "KAFKA_STATISTICS_INTERVAL_MS", default_value_t = 5_000)]
    pub statistics_interval_ms: u64,

    #[command(flatten)]
    pub common: service::Common,
}

impl service::Validate for Config {
    /// Lists every problem at once, naming the setting, never its value.
    fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        self.common.problems(&mut problems);
        self.kafka.problems(&mut problems);
        if !(1..=10_000).contains(&self.batch_size) {
            problems.push("CONSUMER_BATCH_SIZE must be between 1 and 10000".to_owned());
        }
        if self.batch_wait_ms > 10_000 {
            problems.push("CONSUMER_BATCH_WAIT_MS must be at most 10000".to_owned());
        }
        if self.session_timeout_ms > self.max_poll_interval_ms {
            problems.push(
                "KAFKA_SESSION_TIMEOUT_MS must not exceed KAFKA_MAX_POLL_INTERVAL_MS".to_owned(),
            );
        }
        if self.group_id.is_empty() {
            problems.push("CONSUMER_GROUP must not be empty".to_owned());
        }
        if self.topic_requested.is_empty() || self.topic_dead_letter.is_empty() {
            problems.push("topic names must not be empty".to_owned());
        }
        if !(1..=10_000).contains(&self.outbox_batch) {
            problems.push("OUTBOX_BATCH must be between 1 and 10000".to_owned());
        }
        if !(10..=60_000).contains(&self.outbox_poll_ms) {
            problems.push("OUTBOX_POLL_MS must be between 10 and 60000".to_owned());
        }
        self.retention_problems(&mut problems);
        let policy = crate::effects::target::Policy::parse(&self.webhook_allowed_networks)
            .map_err(|problem| problems.push(problem));
        if let Some(url) = &self.webhook_url {
            let production = self.common.profile.is_production();
            if let Ok(policy) = &policy
                && let Err(problem) = crate::effects::target::check_url(url, production, policy)
            {
                problems.push(problem);
            }
            let secret = self.webhook_secret.as_deref();
            if let Some(problem) = crate::effects::notify::secret_problem(secret) {
                problems.push(problem);
            }
            if !self.outbox_relay {
                problems.push(
                    "WEBHOOK_URL needs OUTBOX_RELAY=true (the relay queues notifications)"
                        .to_owned(),
                );
            }
        }
        if !(100..=120_000).contains(&self.webhook_timeout_ms) {
            problems.push("WEBHOOK_TIMEOUT_MS must be between 100 and 120000".to_owned());
        }
        if !(1..=100).contains(&self.webhook_max_attempts) {
            problems.push("WEBHOOK_MAX_ATTEMPTS must be between 1 and 100".to_owned());
        }
        if self.webhook_backoff_ms == 0 || self.webhook_backoff_max_ms < self.webhook_backoff_ms {
            problems.push(
                "WEBHOOK_BACKOFF_MS must be positive and at most WEBHOOK_BACKOFF_MAX_MS".to_owned(),
            );
        }
        if self.topic_issued.is_empty() {
            problems.push("TOPIC_COUPON_ISSUED must not be empty".to_owned());
        }
        if self.topic_campaign_events.is_empty() {
            problems.push("TOPIC_CAMPAIGN_EVENTS must not be empty".to_owned());
        }
        if self.database_pool_size == 0 {
            problems.push("DATABASE_POOL_SIZE must be positive".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Config {
    /// `OUTBOX_RETENTION_SECS` and `OUTBOX_PURGE_BATCH`.
    fn retention_problems(&self, problems: &mut Vec<String>) {
        if self.outbox_retention_secs != 0
            && !(MIN_RETENTION_SECS..=MAX_RETENTION_SECS).contains(&self.outbox_retention_secs)
        {
            problems.push(format!(
                "OUTBOX_RETENTION_SECS must be 0 (keep forever) or between {MIN_RETENTION_SECS} and {MAX_RETENTION_SECS}"
            ));
        }
        if !(1..=50_000).contains(&self.outbox_purge_batch) {
            problems.push("OUTBOX_PURGE_BATCH must be between 1 and 50000".to_owned());
        }
    }

    /// Parses and validates settings from arguments (first item is the program name), the
    /// environment and files, as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Self, service::config::Failure>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        service::config::parse(clap::Command::new("coupon-consumer"), args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, Vec<String>> {
        let args = [
            "coupon-consumer",
            "--database-url=postgres://localhost/coupon",
        ];
        Config::from_args(args.iter().chain(extra)).map_err(|failure| match failure {
            service::config::Failure::Invalid(problems) => problems,
            service::config::Failure::Clap(e) => vec![e.to_string()],
        })
    }

    fn problems(extra: &[&str]) -> Vec<String> {
        parse(extra).err().unwrap_or_default()
    }

    #[test]
    fn retention_defaults_to_a_week_in_batches_of_five_thousand() {
        let config = parse(&[]).expect("the defaults are valid");
        assert_eq!(config.outbox_retention_secs, 7 * 86_400);
        assert_eq!(config.outbox_purge_batch, 5_000);
    }

    #[test]
    fn retention_is_zero_for_ever_or_within_its_range() {
        for valid in ["0", "60", "86400", "315360000"] {
            let config = parse(&[&format!("--outbox-retention-secs={valid}")]);
            assert_eq!(
                config.map(|c| c.outbox_retention_secs.to_string()),
                Ok(valid.to_owned())
            );
        }
        for invalid in ["1", "59", "315360001"] {
            let found = problems(&[&format!("--outbox-retention-secs={invalid}")]);
            assert!(
                found.iter().any(|p| p.starts_with("OUTBOX_RETENTION_SECS")),
                "{invalid}: {found:?}"
            );
        }
        let found = problems(&["--outbox-retention-secs=-1"]);
        assert!(
            found.iter().any(|p| p.contains("outbox-retention-secs")),
            "{found:?}"
        );
    }

    #[test]
    fn purge_batch_is_bounded() {
        let config = parse(&["--outbox-purge-batch=1"]).expect("one row per statement");
        assert_eq!(config.outbox_purge_batch, 1);
        for invalid in ["0", "50001"] {
            let found = problems(&[&format!("--outbox-purge-batch={invalid}")]);
            assert_eq!(
                found,
                ["OUTBOX_PURGE_BATCH must be between 1 and 50000"],
                "{invalid}"
            );
        }
    }
}
