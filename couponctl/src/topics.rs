//! `couponctl topics`: creates the pipeline's topics through the Kafka admin API.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    kafka: service::KafkaArgs,

    /// Partitions of the requested-issuance topic: the ceiling on consumer pods.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 12)]
    partitions: i32,

    /// Replication factor (3 on a production cluster; 1 on a single local broker).
    #[arg(long, env = "TOPIC_REPLICATION", default_value_t = 1)]
    replication: i32,

    #[arg(long, env = "TOPIC_ISSUANCE_REQUESTED", default_value = schema::topics::ISSUANCE_REQUESTED)]
    requested: String,
    #[arg(long, env = "TOPIC_ISSUANCE_DEAD_LETTER", default_value = schema::topics::ISSUANCE_DEAD_LETTER)]
    dead_letter: String,
    #[arg(long, env = "TOPIC_COUPON_ISSUED", default_value = schema::topics::COUPON_ISSUED)]
    issued: String,
    #[arg(long, env = "TOPIC_CAMPAIGN_EVENTS", default_value = schema::topics::CAMPAIGN_EVENTS)]
    campaign_events: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = args
        .kafka
        .client("couponctl-topics")
        .create()
        .context("creating the Kafka admin client")?;
    let replication = || TopicReplication::Fixed(args.replication);
    let topics = [
        NewTopic::new(&args.requested, args.partitions, replication()),
        NewTopic::new(&args.dead_letter, 1, replication()),
        NewTopic::new(&args.issued, args.partitions, replication()),
        NewTopic::new(&args.campaign_events, 1, replication()),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(name) => println!("topic {name}: created"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("topic {name}: exists")
            }
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}
