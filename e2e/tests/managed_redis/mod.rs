//! The pipeline on Redis as managed services offer it: an issuance burst through the ingress
//! and consumer binaries over a TLS-only Redis with a private CA and over a three-master Redis
//! Cluster, each ended by the world's invariant check and by `couponctl verify` with the same
//! settings; and the ingress refusing, at start, a wrong CA and plaintext to a TLS-only server.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use testkit::certs::Authority;
use testkit::redis_servers::{RedisCluster, TlsRedis};
use testkit::{World, users, workspace_bin};

/// Bursts of more users than stock on each of `campaigns` campaigns: exactly the stock issued
/// and every invariant kept; then `couponctl verify` over every campaign exits 0.
async fn bursts_then_verify(world: &World, campaigns: usize) {
    let mut ids = Vec::new();
    for n in 0..campaigns {
        let campaign = world.open_campaign(80, 1).await;
        let progress = Arc::new(AtomicUsize::new(0));
        let answers = world
            .burst(&campaign, users(&format!("m{n}-"), 0..160), 32, progress)
            .await;
        let report = world.check(&campaign, &answers).await;
        assert_eq!(report.coupons, 80, "the whole stock issued");
        ids.push(campaign);
    }
    let stdout = world.couponctl_verify();
    for id in &ids {
        let line = format!("campaign {id}: stock 80, coupons 80, counter 80, rejected 0");
        assert!(stdout.contains(&line), "{line} in:\n{stdout}");
    }
    assert!(!stdout.contains("BREACH"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_a_tls_redis_with_a_private_ca() {
    let redis = TlsRedis::start().await;
    let world = World::start_on("redis-tls", Vec::new(), redis.endpoint()).await;
    bursts_then_verify(&world, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let world = World::start_on("redis-cluster", Vec::new(), cluster.endpoint()).await;
    bursts_then_verify(&world, 3).await;
}

/// The ingress stops at start, naming REDIS_URL and the cause, when the server's certificate
/// does not chain to REDIS_CA_FILE, and when it speaks plaintext to a TLS-only server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_refuses_a_wrong_ca_and_plaintext_at_start() {
    let redis = TlsRedis::start().await;
    let other = Authority::new("coupon-wrong-ca");
    let plaintext = format!("redis://127.0.0.1:{}/0", redis.port);
    let cases = [
        (
            redis.endpoint().url,
            Some(other.ca()),
            "invalid peer certificate: UnknownIssuer",
        ),
        (plaintext, None, "needs a rediss:// REDIS_URL"),
    ];
    for (url, ca_file, cause) in cases {
        let mut command = Command::new(workspace_bin("coupon-ingress"));
        command
            .env("COUPON_ENV", "development")
            .env("INGRESS_LISTEN", "127.0.0.1:0")
            .env("INGRESS_OPS_LISTEN", "127.0.0.1:0")
            .env("REDIS_URL", url)
            .env("REDIS_TIMEOUT_MS", "500")
            .env_remove("REDIS_CA_FILE")
            .env_remove("REDIS_CLUSTER");
        if let Some(ca) = ca_file {
            command.env("REDIS_CA_FILE", ca);
        }
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || command.output().unwrap()),
        )
        .await
        .expect("the ingress exits")
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("connecting to REDIS_URL"), "{stderr}");
        assert!(stderr.contains(cause), "{cause} in:\n{stderr}");
    }
}
