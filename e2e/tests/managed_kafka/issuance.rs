//! The issuance path on a secure broker: the ingress and consumer binaries with the broker's
//! `KAFKA_PROPERTY_*` settings (TLS with the cluster's CA, and SCRAM), a burst past the stock,
//! every invariant checked, then `couponctl verify` (which reads the consumer group's lag) with
//! the same settings.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use testkit::broker_tls::{Scram, ScramUser};
use testkit::{PrivateBroker, World, users, workspace_bin};

async fn burst_then_verify(world: &World) {
    let campaign = world.open_campaign(60, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world
        .burst(&campaign, users("k-", 0..120), 24, progress)
        .await;
    let report = world.check(&campaign, &answers, false).await;
    assert_eq!(report.coupons, 60, "the whole stock issued");
    let fixture = &world.fixture;
    let output = Command::new(workspace_bin("couponctl"))
        .arg("verify")
        .env("COUPON_ENV", "development")
        .env("DATABASE_URL", &fixture.database_url)
        .env("KAFKA_BROKERS", world.broker.brokers())
        .envs(world.broker.kafka_env())
        .env("CONSUMER_GROUP", &fixture.group)
        .env("TOPIC_ISSUANCE_REQUESTED", &fixture.topic)
        .env_remove("REDIS_CA_FILE")
        .envs(world.redis_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = format!("campaign {campaign}: stock 60, coupons 60, counter 60, rejected 0");
    assert!(stdout.contains(&line), "{line} in:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_tls_to_kafka() {
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let world = World::start_on_broker("kafka-tls", Vec::new(), broker).await;
    burst_then_verify(&world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_tls_and_scram_to_kafka() {
    let user = ScramUser::new("coupon-pipeline", "pipeline-secret", Scram::Sha512);
    let broker = PrivateBroker::start_secure(vec![user]).await;
    let world = World::start_on_broker("kafka-scram", Vec::new(), broker).await;
    burst_then_verify(&world).await;
}
