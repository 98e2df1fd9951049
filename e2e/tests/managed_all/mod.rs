//! The issuance path on all three managed services at once, in the production profile: the
//! ledger on a TLS-only PostgreSQL (`sslmode=verify-full` with its CA), the gate on a TLS-only
//! Redis (`rediss://` and `REDIS_CA_FILE`), Kafka behind TLS (`KAFKA_PROPERTY_security.protocol`
//! and `KAFKA_PROPERTY_ssl.ca.location`), each server with a CA of its own that no system store
//! holds. `couponctl migrate` and `couponctl topics`, then the ingress and consumer binaries, a
//! burst past the stock, the world's invariant check and `couponctl verify`, every command with
//! the same settings. None of the three servers accepts plaintext, so nothing here can pass
//! unencrypted.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use service::dev_token::DevSecret;
use testkit::pg_tls::PrivatePostgresTls;
use testkit::redis_servers::TlsRedis;
use testkit::world::Services;
use testkit::{PrivateBroker, World, users};

use crate::managed_postgres::couponctl;

/// Production's token settings: an HS256 secret of 32 bytes or more, an issuer and an audience.
const SECRET: &str = "managed-services-hs256-secret-0123456789";
const ISSUER: &str = "https://idp.coupon.test";
const AUDIENCE: &str = "coupon-issuance";

/// `couponctl` in production with `env` (the managed services' settings) and nothing else of
/// PostgreSQL's inherited.
fn run(args: &[&str], env: &[(String, String)]) -> String {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("COUPON_ENV", "production"));
    let output = couponctl(args, &env);
    let text = text(&output);
    assert!(output.status.success(), "couponctl {args:?}: {text}");
    text
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The settings of one service as `(name, value)` pairs.
fn owned<K: ToString, V: ToString>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_over_tls_to_postgresql_redis_and_kafka_in_production() {
    service::tls::install();
    // Declared before the world: the servers outlive its processes.
    let postgres = PrivatePostgresTls::start().await;
    let redis = TlsRedis::start().await;
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let fixture = postgres.fixture_without_topics(broker.kafka()).await;
    assert!(
        fixture
            .database_url
            .contains("sslmode=verify-full&sslrootcert=")
    );
    let kafka = owned(
        [("KAFKA_BROKERS".to_owned(), broker.brokers())]
            .into_iter()
            .chain(broker.kafka_env()),
    );
    let tls = (
        "KAFKA_PROPERTY_security.protocol".to_owned(),
        "SSL".to_owned(),
    );
    assert!(kafka.contains(&tls), "{kafka:?}");

    let ledger = owned([("DATABASE_URL", &fixture.database_url)]);
    let migrated = run(&["migrate"], &ledger);
    assert!(migrated.contains("migrations: applied"), "{migrated}");
    let mut topics = kafka.clone();
    topics.extend(owned([
        ("TOPIC_ISSUANCE_REQUESTED", &fixture.topic),
        ("TOPIC_ISSUANCE_DEAD_LETTER", &fixture.dead_letter_topic),
        ("TOPIC_COUPON_ISSUED", &fixture.issued_topic),
        ("TOPIC_CAMPAIGN_EVENTS", &fixture.events_topic),
    ]));
    let replication = ["--replication", "1", "--min-insync-replicas", "1"];
    let created = run(
        &[&["topics", "--partitions", "3"][..], &replication].concat(),
        &topics,
    );
    assert_eq!(created.matches(": created").count(), 4, "{created}");

    let env = vec![
        ("COUPON_ENV", "production".to_owned()),
        ("JWT_HS256_SECRET", SECRET.to_owned()),
        ("JWT_ISSUER", ISSUER.to_owned()),
        ("JWT_AUDIENCE", AUDIENCE.to_owned()),
    ];
    let services = Services {
        redis: Some(redis.endpoint()),
        broker: Some(broker),
        fixture: Some(fixture),
        redis_proxy: false,
    };
    let mut world = World::start_on_services("all-tls", env, services).await;
    world.signer = Some(DevSecret {
        value: SECRET.to_owned(),
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
    });
    assert!(world.redis_endpoint().url.starts_with("rediss://"));

    let campaign = world.open_campaign(60, 1).await;
    // Production: a token without `iss` and `aud` is refused.
    let unbound = world
        .http
        .post(format!("{}/v1/campaigns/{campaign}/issuances", world.base))
        .bearer_auth(testkit::token("unbound", None, 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(unbound.status(), 401);
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world
        .burst(&campaign, users("all-", 0..120), 24, progress)
        .await;
    let count = |status: u16| answers.iter().filter(|a| a.status == status).count();
    assert_eq!((count(202), count(410)), (60, 60), "{answers:?}");
    // Every 202 persisted (the check waits for each), nothing rejected, no invariant broken.
    let report = world.check(&campaign, &answers).await;
    assert_eq!((report.coupons, report.rejected), (60, 0));

    let fixture = &world.fixture;
    let mut verify = ledger;
    verify.extend(kafka);
    verify.extend(owned(world.redis_env()));
    verify.extend(owned([
        ("CONSUMER_GROUP", &fixture.group),
        ("TOPIC_ISSUANCE_REQUESTED", &fixture.topic),
    ]));
    let verified = run(&["verify"], &verify);
    let line = format!("campaign {campaign}: stock 60, coupons 60, counter 60, rejected 0");
    assert!(verified.contains(&line), "{line} in:\n{verified}");
    assert!(!verified.contains("BREACH"), "{verified}");
}
