//! A downstream team's consumer that is not ours: `e2e/python/consume_issued.py` (PyPI
//! `confluent-kafka` and `protobuf`) reads a real run's `coupon.issued` topic and decodes it
//! from the published descriptor set alone, as docs/TOPICS.md tells other teams to. Every coupon
//! of the ledger must come out of it with the ledger's own fields and CloudEvents headers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use prost::Message as _;
use schema::ids::{CampaignId, IssuanceId};
use schema::proto::{CampaignEvent, IssuanceRequested};
use schema::time::unix_ms;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use testkit::{World, users};

const COUPONS: usize = 40;

fn repository_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Runs the script with `args`; a failure names missing packages and says how to get them.
fn run_script(args: &[&str]) -> std::process::Output {
    let output = Command::new("python3")
        .arg(repository_file("e2e/python/consume_issued.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert_ne!(
        output.status.code(),
        Some(3),
        "the Python consumer's packages are missing: run dev/test, which installs them\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The script's JSON lines for `topic`, or a failure saying what went wrong.
fn python_consumer(brokers: &str, topic: &str, expect: usize) -> Vec<Value> {
    let descriptors = repository_file("schema/descriptors/coupon-v1.binpb");
    let output = run_script(&[
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--descriptors",
        descriptors.to_str().unwrap(),
        "--expect",
        &expect.to_string(),
        "--timeout",
        "60",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python consumer failed ({}):\n{stderr}",
        output.status
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// What the ledger says each coupon's event must carry: coupon id -> proto3 JSON of the event.
async fn ledger_events(world: &World) -> BTreeMap<String, Value> {
    let db = world.fixture.db().await;
    let rows = db
        .query(
            "SELECT id, campaign_id, user_id, seq, issued_at, expires_at FROM coupons",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let (coupon, campaign): (Uuid, Uuid) = (row.get(0), row.get(1));
            let issuance = IssuanceId {
                campaign: CampaignId(campaign),
                reservation: coupon,
            };
            let (issued, expires): (OffsetDateTime, OffsetDateTime) = (row.get(4), row.get(5));
            // proto3 JSON: 64-bit integers are strings.
            let event = serde_json::json!({
                "event_id": coupon.to_string(),
                "issuance_id": issuance.to_string(),
                "coupon_id": coupon.to_string(),
                "campaign_id": campaign.to_string(),
                "user_id": row.get::<_, String>(2),
                "seq": row.get::<_, i32>(3),
                "issued_at_ms": unix_ms(issued).to_string(),
                "expires_at_ms": unix_ms(expires).to_string(),
            });
            (coupon.to_string(), event)
        })
        .collect()
}

/// The other topics name their schema and subject too: a requested issuance is about its
/// issuance id, a campaign event about its campaign.
async fn assert_subjects_and_schemas(world: &World, campaign: &str) {
    let requested = world.fixture.read_topic(&world.fixture.topic).await;
    assert!(requested.len() >= COUPONS, "{} requested", requested.len());
    for record in &requested {
        let event = IssuanceRequested::decode(record.payload.as_slice()).unwrap();
        assert_eq!(record.header("ce_subject"), Some(event.issuance_id));
        assert_eq!(
            record.header("ce_dataschema").as_deref(),
            Some("urn:coupon:proto:coupon.v1.IssuanceRequested")
        );
    }
    let events = testkit::eventually(Duration::from_secs(30), "the opened event", || async {
        let records = world.fixture.read_topic(&world.fixture.events_topic).await;
        (!records.is_empty()).then_some(records)
    })
    .await;
    for record in &events {
        let event = CampaignEvent::decode(record.payload.as_slice()).unwrap();
        assert_eq!(event.campaign_id, campaign);
        assert_eq!(record.header("ce_subject").as_deref(), Some(campaign));
        assert_eq!(
            record.header("ce_dataschema").as_deref(),
            Some("urn:coupon:proto:coupon.v1.CampaignEvent")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_consumer_decodes_every_coupon_from_the_published_descriptors() {
    // Missing packages fail here, before any service starts.
    assert!(run_script(&["--help"]).status.success());
    let world = World::start("downstream-python").await;
    let campaign = world.open_campaign(COUPONS as u32, 1).await;
    let answers = world
        .burst(
            &campaign,
            users("py", 0..COUPONS + 10),
            16,
            Arc::new(AtomicUsize::new(0)),
        )
        .await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), COUPONS);
    world
        .fixture
        .wait_for_rows(COUPONS as i64, "the burst committed")
        .await;
    let expected = ledger_events(&world).await;
    assert_eq!(expected.len(), COUPONS);

    // The script reads until it has seen every coupon's event (the relay publishes them
    // shortly after the commit), failing after its own timeout.
    let (brokers, topic) = (
        world.fixture.brokers.clone(),
        world.fixture.issued_topic.clone(),
    );
    let lines = tokio::task::spawn_blocking(move || python_consumer(&brokers, &topic, COUPONS))
        .await
        .unwrap();

    let mut decoded = BTreeSet::new();
    for line in &lines {
        let event = &line["event"];
        let coupon = event["coupon_id"].as_str().unwrap();
        let want = expected
            .get(coupon)
            .unwrap_or_else(|| panic!("an event of a coupon the ledger lacks: {line}"));
        assert_eq!(event, want, "decoded event of coupon {coupon}");
        let headers = &line["headers"];
        assert_eq!(headers["ce_id"], want["event_id"]);
        assert_eq!(headers["ce_subject"].as_str(), Some(coupon));
        assert_eq!(headers["ce_type"], "coupon.issued.v1");
        assert_eq!(
            headers["ce_dataschema"],
            "urn:coupon:proto:coupon.v1.CouponIssued"
        );
        assert_eq!(headers["ce_source"], "/coupon-issuance");
        decoded.insert(coupon.to_owned());
    }
    assert_eq!(
        decoded.iter().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every coupon of the ledger, decoded by the Python consumer"
    );
    assert_subjects_and_schemas(&world, &campaign).await;
}
