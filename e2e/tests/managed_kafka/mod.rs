//! Kafka as managed clusters offer it (MSK with TLS and SCRAM): a private broker behind TLS
//! with a throwaway CA, optionally with SCRAM users ([`PrivateBroker::start_secure`]). Records
//! go round through the builder every binary uses, with the properties a binary reads from
//! `KAFKA_PROPERTY_<name>`; a wrong CA, a host the certificate does not name, plaintext and a
//! wrong password fail naming `KAFKA_BROKERS` and the cause; the ingress stops at start and the
//! consumer stays unready, saying why; `couponctl topics` sets replication, `min.insync.replicas`
//! and retention over TLS; then an issuance burst through the binaries over TLS (and SCRAM).

mod issuance;

use std::process::Command;
use std::time::Duration;

use service::KafkaArgs;
use testkit::broker_tls::{Scram, ScramUser, env_of, kafka_with, round_trip, topic_configs};
use testkit::certs::Authority;
use testkit::{Fixture, PrivateBroker, Proc, free_port, workspace_bin};

/// `properties` with `name` set to `value` (added when absent).
fn with(mut properties: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    properties.retain(|(n, _)| n != name);
    properties.push((name.to_owned(), value.to_owned()));
    properties
}

/// The failure of a cluster look-up with these settings, as text.
async fn refusal(kafka: &KafkaArgs) -> String {
    kafka
        .check("e2e-refusal", None, Duration::from_secs(5))
        .await
        .expect_err("the look-up fails")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_go_round_over_tls_trusting_the_clusters_ca() {
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let properties = broker.properties();
    assert!(properties.contains(&("security.protocol".to_owned(), "SSL".to_owned())));
    let read = round_trip(&broker.kafka(), "e2e.tls.round", b"over tls")
        .await
        .unwrap();
    assert_eq!(read, [b"over tls".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_an_unnamed_host_and_plaintext_fail_naming_the_cause() {
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let secure = broker.secure.as_ref().unwrap();
    let other = Authority::new("coupon-wrong-kafka-ca");
    let wrong_ca = kafka_with(
        &broker.brokers(),
        with(
            broker.properties(),
            "ssl.ca.location",
            &other.ca().display().to_string(),
        ),
    );
    let unnamed_host = kafka_with(&secure.misnamed_address(), broker.properties());
    let plaintext = KafkaArgs::plain(&broker.brokers());
    let (wrong_ca, unnamed_host, plaintext) = tokio::join!(
        refusal(&wrong_ca),
        refusal(&unnamed_host),
        refusal(&plaintext)
    );
    eprintln!("wrong CA: {wrong_ca}\nunnamed host: {unnamed_host}\nplaintext: {plaintext}");
    let named = format!("KAFKA_BROKERS={}", broker.brokers());
    assert!(wrong_ca.starts_with(&named), "{wrong_ca}");
    assert!(wrong_ca.contains("certificate verify failed"), "{wrong_ca}");
    assert!(
        unnamed_host.contains("certificate verify failed"),
        "{unnamed_host}"
    );
    assert!(plaintext.starts_with(&named), "{plaintext}");
    assert!(
        plaintext.contains("Disconnected"),
        "the broker hung up on the plaintext client: {plaintext}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_authenticate_and_a_wrong_password_is_refused() {
    let users = vec![
        ScramUser::new("coupon-256", "secret-256", Scram::Sha256),
        ScramUser::new("coupon-512", "secret-512", Scram::Sha512),
    ];
    let broker = PrivateBroker::start_secure(users.clone()).await;
    for user in &users {
        let properties = with(
            with(broker.properties(), "sasl.username", &user.name),
            "sasl.password",
            &user.password,
        );
        let properties = with(properties, "sasl.mechanism", user.mechanism.mechanism());
        let topic = format!("e2e.scram.{}", user.name);
        let read = round_trip(&kafka_with(&broker.brokers(), properties), &topic, b"scram")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", user.name));
        assert_eq!(read, [b"scram".to_vec()]);
    }
    let wrong = kafka_with(
        &broker.brokers(),
        with(broker.properties(), "sasl.password", "not-the-password"),
    );
    let refused = refusal(&wrong).await;
    eprintln!("wrong password: {refused}");
    assert!(refused.contains("SASL authentication error"), "{refused}");
    // TLS alone is not enough: the broker requires a user.
    let anonymous = kafka_with(
        &broker.brokers(),
        with(broker.properties(), "security.protocol", "SSL"),
    );
    let refused = refusal(&anonymous).await;
    eprintln!("no user: {refused}");
    assert!(refused.starts_with("KAFKA_BROKERS="), "{refused}");
}

/// `couponctl topics` over TLS, with the settings of a single broker: every topic carries the
/// replication, `min.insync.replicas` and retention it was given; a second run leaves them, and
/// one with other settings reports what differs without changing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couponctl_topics_sets_the_topic_configs_over_tls() {
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let names = ["requested", "dlq", "issued", "events"].map(|n| format!("e2e.{id}.{n}"));
    let run = |retention_ms: &str| {
        Command::new(workspace_bin("couponctl"))
            .arg("topics")
            .env("COUPON_ENV", "development")
            .env("KAFKA_BROKERS", broker.brokers())
            .envs(broker.kafka_env())
            .args(["--partitions", "2", "--replication", "1"])
            .args(["--min-insync-replicas", "1", "--retention-ms", retention_ms])
            .env("TOPIC_ISSUANCE_REQUESTED", &names[0])
            .env("TOPIC_ISSUANCE_DEAD_LETTER", &names[1])
            .env("TOPIC_COUPON_ISSUED", &names[2])
            .env("TOPIC_CAMPAIGN_EVENTS", &names[3])
            .output()
            .unwrap()
    };
    let first = run("86400000");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(stdout.matches(": created").count(), 4, "{stdout}");
    let kafka = broker.kafka();
    for (name, retention) in names.iter().zip(["86400000", "2592000000"].repeat(2)) {
        let configs = topic_configs(&kafka, name).await;
        let get = |key: &str| {
            configs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("min.insync.replicas"), Some("1"), "{name}: {configs:?}");
        assert_eq!(get("cleanup.policy"), Some("delete"), "{name}");
        assert_eq!(get("retention.ms"), Some(retention), "{name}");
    }
    let second = run("86400000");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert_eq!(stdout.matches(": exists\n").count(), 4, "{stdout}");
    let other = run("172800000");
    let stdout = String::from_utf8_lossy(&other.stdout);
    assert!(other.status.success(), "{stdout}");
    let drift = "exists, left unchanged: retention.ms is 86400000, the settings say 172800000";
    assert_eq!(stdout.matches(drift).count(), 2, "{stdout}");
    let configs = topic_configs(&kafka, &names[0]).await;
    assert!(configs.contains(&("retention.ms".to_owned(), "86400000".to_owned())));
}

/// The ingress, trusting the wrong CA, stops at start naming KAFKA_BROKERS and the refused
/// certificate; the consumer stays unready and `/readyz` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_stops_the_ingress_and_keeps_the_consumer_unready() {
    let broker = PrivateBroker::start_secure(Vec::new()).await;
    let fixture = Fixture::new(1).await;
    let other = Authority::new("coupon-wrong-kafka-ca");
    let wrong_ca = with(
        broker.properties(),
        "ssl.ca.location",
        &other.ca().display().to_string(),
    );
    let env = |command: &mut Command| {
        command
            .env("COUPON_ENV", "development")
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", &fixture.database_url)
            .env("REDIS_URL", testkit::redis_url())
            .env("REDIS_KEY_PREFIX", &fixture.redis_prefix)
            .env("KAFKA_BROKERS", broker.brokers())
            .env("TOPIC_ISSUANCE_REQUESTED", &fixture.topic)
            .env("TOPIC_ISSUANCE_DEAD_LETTER", &fixture.dead_letter_topic)
            .env("CONSUMER_GROUP", &fixture.group)
            .envs(env_of(wrong_ca.clone()));
    };
    let mut ingress = Command::new(workspace_bin("coupon-ingress"));
    env(&mut ingress);
    ingress
        .env("INGRESS_LISTEN", "127.0.0.1:0")
        .env("INGRESS_OPS_LISTEN", "127.0.0.1:0");
    let output = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::task::spawn_blocking(move || ingress.output().unwrap()),
    )
    .await
    .expect("the ingress exits")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("looking up TOPIC_ISSUANCE_REQUESTED on KAFKA_BROKERS"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    let ops = free_port();
    let mut consumer = Command::new(workspace_bin("coupon-consumer"));
    env(&mut consumer);
    consumer.env("CONSUMER_HTTP_LISTEN", format!("127.0.0.1:{ops}"));
    let _consumer = Proc::spawn(&mut consumer);
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{ops}/readyz");
    let body = testkit::eventually(
        Duration::from_secs(30),
        "the consumer's /readyz to name the refused certificate",
        || async {
            let response = http.get(&ready).send().await.ok()?;
            let status = response.status();
            let body = response.text().await.ok()?;
            (status == 503 && body.contains("certificate verify failed")).then_some(body)
        },
    )
    .await;
    assert!(body.contains("KAFKA_BROKERS"), "{body}");
}
