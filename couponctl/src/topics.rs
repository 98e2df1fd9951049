//! `couponctl topics`: creates the pipeline's topics through the Kafka admin API, with the
//! replication, `min.insync.replicas` and retention the delivery guarantees rest on. The
//! defaults suit a production cluster of three or more brokers; a single local broker needs
//! `--replication 1 --min-insync-replicas 1`. Topics that exist are left as they are: a setting
//! that differs from what the command would create is reported, never changed.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use service::kafka::Reporter;

/// 7 days: a long consumer or database outage, and a replay into a rebuilt ledger.
const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// 30 days: dead letters are read by people, campaign events by late joiners.
const MONTH_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    kafka: service::KafkaArgs,

    /// Partitions of the requested-issuance and issued topics: the ceiling on consumer pods.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 12)]
    partitions: i32,

    /// Replicas of every topic (3 on a production cluster; 1 on a single local broker).
    #[arg(long, env = "TOPIC_REPLICATION", default_value_t = 3)]
    replication: i32,

    /// `min.insync.replicas` of every topic: with `acks=all` a write is acknowledged once this
    /// many replicas have it, so 2 of 3 survives one broker down (1 on a single local broker).
    #[arg(long, env = "TOPIC_MIN_INSYNC_REPLICAS", default_value_t = 2)]
    min_insync_replicas: i32,

    /// `retention.ms` of the requested-issuance and issued topics (-1: forever).
    #[arg(long, env = "TOPIC_RETENTION_MS", default_value_t = WEEK_MS)]
    retention_ms: i64,

    /// `retention.ms` of the dead-letter and campaign-event topics (-1: forever).
    #[arg(long, env = "TOPIC_LONG_RETENTION_MS", default_value_t = MONTH_MS)]
    long_retention_ms: i64,

    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    requested: String,
    #[arg(long, env = "TOPIC_ISSUANCE_DEAD_LETTER", default_value = schema::topics::ISSUANCE_DEAD_LETTER)]
    dead_letter: String,
    #[arg(long, env = "TOPIC_COUPON_ISSUED", default_value = schema::topics::COUPON_ISSUED)]
    issued: String,
    #[arg(long, env = "TOPIC_CAMPAIGN_EVENTS", default_value = schema::topics::CAMPAIGN_EVENTS)]
    campaign_events: String,
}

/// One topic as the settings describe it.
struct Planned<'a> {
    name: &'a str,
    partitions: i32,
    configs: [(&'static str, String); 3],
}

impl Args {
    /// What is wrong with the settings, each naming its variable.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.partitions < 1 {
            problems.push("TOPIC_PARTITIONS must be at least 1".to_owned());
        }
        if self.replication < 1 {
            problems.push("TOPIC_REPLICATION must be at least 1".to_owned());
        }
        if self.min_insync_replicas < 1 || self.min_insync_replicas > self.replication {
            problems.push(format!(
                "TOPIC_MIN_INSYNC_REPLICAS must be between 1 and TOPIC_REPLICATION ({}): an \
                 acks=all write needs that many replicas in sync",
                self.replication
            ));
        }
        for (name, value) in [
            ("TOPIC_RETENTION_MS", self.retention_ms),
            ("TOPIC_LONG_RETENTION_MS", self.long_retention_ms),
        ] {
            if value < 1 && value != -1 {
                problems.push(format!("{name} must be positive, or -1 (forever)"));
            }
        }
        problems
    }

    fn planned(&self) -> [Planned<'_>; 4] {
        let topic = |name, partitions, retention_ms: i64| Planned {
            name,
            partitions,
            configs: [
                ("min.insync.replicas", self.min_insync_replicas.to_string()),
                ("retention.ms", retention_ms.to_string()),
                ("cleanup.policy", "delete".to_owned()),
            ],
        };
        [
            topic(&self.requested, self.partitions, self.retention_ms),
            topic(&self.dead_letter, 1, self.long_retention_ms),
            topic(&self.issued, self.partitions, self.retention_ms),
            topic(&self.campaign_events, 1, self.long_retention_ms),
        ]
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let problems = args.problems();
    if !problems.is_empty() {
        anyhow::bail!("invalid settings: {}", problems.join("; "));
    }
    // A refused certificate or password shows here, named, rather than as a timeout below.
    args.kafka
        .check("couponctl-topics", None, Duration::from_secs(10))
        .await
        .context("reaching the Kafka cluster")?;
    let admin: AdminClient<Reporter> = args
        .kafka
        .client("couponctl-topics")
        .create_with_context(Reporter::default())
        .context("creating the Kafka admin client")?;
    let planned = args.planned();
    let topics: Vec<NewTopic<'_>> = planned
        .iter()
        .map(|p| {
            p.configs.iter().fold(
                NewTopic::new(
                    p.name,
                    p.partitions,
                    TopicReplication::Fixed(args.replication),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(name) => println!("topic {name}: created"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let wanted = planned.iter().find(|p| p.name == name);
                let drift = match wanted {
                    Some(p) => drift(&admin, &options, p).await?,
                    None => Vec::new(),
                };
                if drift.is_empty() {
                    println!("topic {name}: exists");
                } else {
                    println!("topic {name}: exists, left unchanged: {}", drift.join(", "));
                }
            }
            Err((name, code)) => anyhow::bail!(
                "creating topic {name} ({} replicas on KAFKA_BROKERS={}): {code}",
                args.replication,
                args.kafka.brokers
            ),
        }
    }
    Ok(())
}

/// The settings of an existing topic that differ from the planned ones, as `key is X, the
/// settings say Y`.
async fn drift(
    admin: &AdminClient<Reporter>,
    options: &AdminOptions,
    planned: &Planned<'_>,
) -> anyhow::Result<Vec<String>> {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(planned.name)], options)
        .await?;
    let mut drift = Vec::new();
    for resource in described.into_iter().flatten() {
        for (key, wanted) in &planned.configs {
            let actual = resource.get(key).and_then(|entry| entry.value.clone());
            if actual.as_deref() != Some(wanted.as_str()) {
                drift.push(format!(
                    "{key} is {}, the settings say {wanted}",
                    actual.as_deref().unwrap_or("unset")
                ));
            }
        }
    }
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        Cli::parse_from(std::iter::once("topics").chain(argv.iter().copied())).args
    }

    #[test]
    fn the_defaults_suit_a_three_broker_cluster() {
        let args = parse(&[]);
        assert!(args.problems().is_empty(), "{:?}", args.problems());
        assert_eq!((args.replication, args.min_insync_replicas), (3, 2));
        let planned = args.planned();
        let config = |i: usize, key: &str| {
            planned[i]
                .configs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(config(0, "retention.ms").as_deref(), Some("604800000"));
        assert_eq!(config(1, "retention.ms").as_deref(), Some("2592000000"));
        assert_eq!(config(2, "min.insync.replicas").as_deref(), Some("2"));
        assert_eq!(planned[1].partitions, 1);
    }

    #[test]
    fn an_unreachable_min_insync_replicas_is_refused() {
        let args = parse(&["--replication", "1"]);
        let problems = args.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("TOPIC_MIN_INSYNC_REPLICAS"));
        let single = parse(&["--replication", "1", "--min-insync-replicas", "1"]);
        assert!(single.problems().is_empty());
        assert!(!parse(&["--retention-ms", "0"]).problems().is_empty());
    }
}
