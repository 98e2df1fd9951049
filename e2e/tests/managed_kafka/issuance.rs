//! The issuance path on a secure broker: the ingress and consumer binaries with the broker's
//! `KAFKA_PROPERTY_*` settings (TLS with the cluster's CA, and SCRAM), a burst past the stock,
//! every invariant checked, then `couponctl verify` (which reads the consumer group's lag) with
//! the same settings.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use testkit::broker_tls::{Scram, ScramUser};
use testkit::{PrivateBroker, World, users};

async fn burst_then_verify(world: &World) {
    let campaign = world.open_campaign(60, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world
        .burst(&campaign, users("k-", 0..120), 24, progress)
        .await;
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 60, "the whole stock issued");
    let stdout = world.couponctl_verify();
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
