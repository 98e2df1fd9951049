//! The issuance path over TLS to PostgreSQL: `couponctl migrate`, then the ingress and consumer
//! binaries with the ledger on the TLS-only server (`PGSSLMODE=verify-full`, `PGSSLROOTCERT`
//! from the environment, no TLS setting in the URL), a burst past the stock, every coupon
//! persisted and read back through the ingress.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use testkit::pg_tls::PrivatePostgresTls;
use testkit::{Api, Fixture, Proc, free_port, users, workspace_bin};

use super::{couponctl, text};

/// A binary with the ledger's settings of this test only: PostgreSQL from the environment,
/// Redis and Kafka shared (the fixture's key prefix and topics), the development profile.
fn binary(name: &str, fixture: &Fixture, ledger: &[(&str, String)]) -> Command {
    let mut command = Command::new(workspace_bin(name));
    for unset in [
        "COUPON_CONFIG_FILE",
        "DATABASE_URL_FILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        command.env_remove(unset);
    }
    command
        .env("COUPON_ENV", "development")
        .env("RUST_LOG", "info")
        .env("REDIS_URL", testkit::redis_url())
        .env("REDIS_KEY_PREFIX", &fixture.redis_prefix)
        .env("KAFKA_BROKERS", &fixture.brokers)
        .env("TOPIC_ISSUANCE_REQUESTED", &fixture.topic)
        .env("CONSUMER_GROUP", &fixture.group)
        .envs(ledger.iter().map(|(k, v)| (k, v)));
    command
}

fn log(fixture: &Fixture, process: &str) -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("coupon-pg-tls-{}-{process}.log", fixture.id));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_runs_end_to_end_over_tls_to_postgresql() {
    service::tls::install();
    let server = PrivatePostgresTls::start().await;
    let fixture = server.fixture(3).await;
    let ca = server.ca().display().to_string();
    let ledger = [
        ("DATABASE_URL", server.url("localhost", &fixture.database)),
        ("PGSSLMODE", "verify-full".to_owned()),
        ("PGSSLROOTCERT", ca),
    ];
    let env: Vec<(&str, &str)> = ledger.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let migrated = couponctl(&["migrate"], &env);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(text(&migrated).contains("migrations: applied"));

    let port = free_port();
    let (ingress_log, file) = log(&fixture, "ingress");
    let _ingress = Proc::spawn_logged(
        binary("coupon-ingress", &fixture, &ledger)
            .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("INGRESS_OPS_LISTEN", "127.0.0.1:0")
            .env("JWT_HS256_SECRET", testkit::HS256_SECRET)
            .env("SHUTDOWN_DELAY_MS", "0"),
        file,
    );
    let (consumer_log, file) = log(&fixture, "consumer");
    let _consumer = Proc::spawn_logged(
        binary("coupon-consumer", &fixture, &ledger)
            .env("TOPIC_ISSUANCE_DEAD_LETTER", &fixture.dead_letter_topic)
            .env("TOPIC_COUPON_ISSUED", &fixture.issued_topic)
            .env("TOPIC_CAMPAIGN_EVENTS", &fixture.events_topic)
            .env("CONSUMER_HTTP_LISTEN", "127.0.0.1:0")
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_MAX_POLL_INTERVAL_MS", "6000"),
        file,
    );
    let api = Api::new(format!("http://127.0.0.1:{port}"), reqwest::Client::new());
    let ready = format!("{}/readyz", api.base);
    testkit::eventually(
        Duration::from_secs(60),
        "the ingress to be ready",
        || async {
            let response = api.http.get(&ready).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;

    // The operator route writes the campaign to the ledger through the ingress's TLS pool.
    let campaign = api.open_campaign(20, 1).await;
    let answers = api
        .burst(
            &campaign,
            users("tls", 0..30),
            8,
            Arc::new(AtomicUsize::new(0)),
        )
        .await;
    let count = |status: u16| answers.iter().filter(|a| a.status == status).count();
    assert_eq!((count(202), count(410)), (20, 10), "{answers:?}");
    // The consumer persists over its own TLS pool; the ingress reads a coupon back over its.
    fixture.wait_for_coupons(&campaign, 20).await;
    let accepted = answers.iter().find(|a| a.status == 202).unwrap();
    let issuance = accepted.issuance_id.as_deref().unwrap();
    testkit::eventually(Duration::from_secs(30), "the coupon read back", || async {
        let body: serde_json::Value = api
            .status(issuance, &accepted.user)
            .await
            .json()
            .await
            .ok()?;
        (body["status"] == "issued").then_some(())
    })
    .await;
    let _ = std::fs::remove_file(ingress_log);
    let _ = std::fs::remove_file(consumer_log);
}

/// A service whose CA does not match the server's: the ingress starts (Redis and Kafka are
/// fine), logs PostgreSQL's TLS failure with its cause, never the URL's password, and turns
/// unready (no event key can be read to sign with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_the_wrong_ca_turns_unready_and_logs_the_cause() {
    service::tls::install();
    let server = PrivatePostgresTls::start().await;
    let fixture = server.fixture(1).await;
    let other = testkit::certs::Authority::new("coupon-other-ca");
    let ledger = [
        ("DATABASE_URL", server.url("localhost", &fixture.database)),
        ("PGSSLMODE", "verify-full".to_owned()),
        ("PGSSLROOTCERT", other.ca().display().to_string()),
    ];
    let port = free_port();
    let (ingress_log, file) = log(&fixture, "ingress-wrong-ca");
    let _ingress = Proc::spawn_logged(
        binary("coupon-ingress", &fixture, &ledger)
            .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("INGRESS_OPS_LISTEN", "127.0.0.1:0")
            .env("JWT_HS256_SECRET", testkit::HS256_SECRET),
        file,
    );
    let logged = testkit::eventually(Duration::from_secs(60), "the TLS failure logged", || {
        let text = std::fs::read_to_string(&ingress_log).unwrap_or_default();
        async move { text.contains("UnknownIssuer").then_some(text) }
    })
    .await;
    assert!(
        logged.contains("TLS to PostgreSQL at localhost (sslmode=verify-full)")
            && logged.contains("not signed by a CA of sslrootcert"),
        "{logged}"
    );
    assert!(!logged.contains(&server.password), "{logged}");
    // Ready as built, then not once the first background check finds no signing key.
    let ready = format!("http://127.0.0.1:{port}/readyz");
    testkit::eventually(
        Duration::from_secs(30),
        "the ingress to turn unready",
        || async {
            let status = reqwest::get(&ready).await.ok()?.status();
            (status == 503).then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_file(ingress_log);
}
