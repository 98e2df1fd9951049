//! `couponctl republish`: a campaign's `coupon.issued.v1` events published again from the
//! ledger, for a team that joins after the topic's retention. The republished records are the
//! relay's originals (same `ce_id`, key, payload and event headers) plus a `republished` mark,
//! for the campaign named only; an unknown campaign or topic is refused with nothing produced.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use schema::proto::CouponIssued;
use testkit::{Record, World, users, workspace_bin};

/// What identifies a record to a reader: `ce_id` → (key, payload in hex, the event's headers
/// less the trace context and the republish mark).
type Identity = BTreeMap<String, (String, String, BTreeMap<String, String>)>;

fn identity<'a>(records: impl IntoIterator<Item = &'a Record>) -> Identity {
    records
        .into_iter()
        .map(|record| {
            let headers = record
                .headers
                .iter()
                .filter(|(name, _)| name != "traceparent" && name != "republished")
                .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
                .collect();
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
            let payload = record.payload.iter().map(|b| format!("{b:02x}")).collect();
            let ce_id = record.header("ce_id").expect("every event has a ce_id");
            (ce_id, (key.into_owned(), payload, headers))
        })
        .collect()
}

fn campaign_of(record: &Record) -> String {
    CouponIssued::decode(record.payload.as_slice())
        .unwrap()
        .campaign_id
}

/// `couponctl republish` with this world's ledger and broker, and `args`; killed after a
/// minute (a pagination that stops advancing would otherwise produce forever).
fn republish(world: &World, args: &[&str]) -> Output {
    let mut child = Command::new(workspace_bin("couponctl"))
        .arg("republish")
        .args(args)
        .env("COUPON_ENV", "development")
        .env("RUST_BACKTRACE", "0")
        .env("DATABASE_URL", &world.fixture.database_url)
        .env("KAFKA_BROKERS", world.broker.brokers())
        .envs(world.broker.kafka_env())
        .env("TOPIC_COUPON_ISSUED", &world.fixture.issued_topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("couponctl republish {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The campaign's coupons as the ledger has them, in full: what must not change.
async fn ledger_coupons(world: &World, campaign: &str) -> Vec<String> {
    let db = world.fixture.db().await;
    db.query(
        "SELECT c::text FROM coupons c WHERE campaign_id::text = $1 ORDER BY id",
        &[&campaign],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_replays_one_campaigns_issued_events_with_their_ids() {
    let world = World::start("republish").await;
    // Two coupons per user in the replayed campaign (so a user's events span pages), and a
    // second campaign whose events must stay out.
    let replayed = world.open_campaign(40, 2).await;
    let other = world.open_campaign(20, 1).await;
    let twice = [users("ra", 0..15), users("ra", 0..15)].concat();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers = world.burst(&replayed, twice, 4, progress.clone()).await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 30);
    let answers = world.burst(&other, users("rb", 0..10), 4, progress).await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 10);
    world
        .fixture
        .wait_for_rows(40, "both bursts committed")
        .await;
    let issued = world.fixture.issued_topic.clone();
    // Read back rather than counted: a broker's high watermark can trail its last write.
    let originals = testkit::eventually(Duration::from_secs(60), "the relay published", || async {
        let records = world.fixture.read_topic(&issued).await;
        (identity(&records).len() >= 40).then_some(records)
    })
    .await;
    let before = ledger_coupons(&world, &replayed).await;

    // Into a replay topic of the joining team's own, in pages of 7.
    let replay = format!("{issued}.replay");
    testkit::create_topics(&world.broker.brokers(), &[(&replay, 3)]).await;
    let output = republish(
        &world,
        &[
            "--campaign",
            &replayed,
            "--topic",
            &replay,
            "--page-size",
            "7",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "republished 30 coupon.issued event(s) to {replay}"
        )),
        "{stdout}"
    );
    let republished = world.fixture.read_topic(&replay).await;

    // Exactly the campaign's coupons, once each, each the original record plus the mark.
    assert_eq!(republished.len(), 30, "one record per coupon");
    assert!(
        republished
            .iter()
            .all(|r| r.header("republished").as_deref() == Some("true")),
        "every republished record is marked"
    );
    assert!(republished.iter().all(|r| campaign_of(r) == replayed));
    let expected = identity(originals.iter().filter(|r| campaign_of(r) == replayed));
    assert_eq!(expected.len(), 30, "the relay published each coupon");
    let again = identity(&republished);
    let ids = |identity: &Identity| identity.keys().cloned().collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&expected), "the original ce_ids");
    for (ce_id, original) in &expected {
        assert_eq!(
            &again[ce_id], original,
            "ce_id {ce_id}: key, payload, headers"
        );
    }
    let db = world.fixture.db().await;
    let ids: BTreeSet<String> = db
        .query(
            "SELECT id::text FROM coupons WHERE campaign_id::text = $1",
            &[&replayed],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, expected.keys().cloned().collect(), "ce_id = coupon id");
    assert_eq!(
        ledger_coupons(&world, &replayed).await,
        before,
        "ledger unchanged"
    );

    // An unknown campaign (into the shared topic, TOPIC_COUPON_ISSUED): refused, nothing sent.
    let unknown = uuid::Uuid::new_v4().to_string();
    let output = republish(&world, &["--campaign", &unknown]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an unknown campaign fails");
    assert!(
        stderr.contains(&format!("no campaign {unknown} in the ledger")),
        "{stderr}"
    );
    // A topic that does not exist is refused, not created.
    let output = republish(&world, &["--campaign", &replayed, "--topic", "no-such"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a missing topic fails");
    assert!(stderr.contains("topic no-such does not exist"), "{stderr}");
    let shared = world.fixture.read_topic(&issued).await;
    assert!(shared.iter().all(|r| r.header("republished").is_none()));
    assert_eq!(world.fixture.read_topic(&replay).await.len(), 30);
}
