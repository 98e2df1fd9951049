//! The outbox and its relay, with real processes: coupons committed while no relay runs are
//! published later, a relay killed mid-way publishes again with the same event ids, and every
//! coupon ends with exactly one distinct `coupon.issued` event id on the topic.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use prost::Message as _;
use schema::proto::CouponIssued;

use testkit::{World, users};

mod safety;
mod webhook;

/// Unpublished `coupon.issued` rows (the campaign's own events share the outbox).
async fn unpublished(world: &World) -> i64 {
    let db = world.fixture.db().await;
    db.query_one(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND kind = 'coupon.issued'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_coupon_gets_one_issued_event_id_through_consumer_kills() {
    let hook = webhook::Webhook::start().await;
    let webhook_env = vec![
        ("WEBHOOK_URL", hook.url()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        // The receiver is on loopback, which only an explicit allow-list opens.
        ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32".to_owned()),
    ];
    let mut world = World::start_with("outbox", vec![("OUTBOX_RELAY", "false".to_owned())]).await;
    let campaign = world.open_campaign(200, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world
        .burst(&campaign, users("o", 0..200), 16, progress)
        .await;
    world
        .fixture
        .wait_for_rows(200, "the burst committed")
        .await;

    // Committed, never published: the consumer dies before any relay ran.
    world.consumer.take().unwrap().kill();
    assert_eq!(unpublished(&world).await, 200, "one outbox row per coupon");
    assert_eq!(
        world.fixture.topic_len(&world.fixture.issued_topic).await,
        0
    );

    // A relay in small rounds, killed once part of the outbox is out.
    world.env = webhook_env;
    world.env.push(("OUTBOX_BATCH", "5".to_owned()));
    world.start_consumer();
    testkit::eventually(
        Duration::from_secs(60),
        "the relay started publishing",
        || async {
            (world.fixture.topic_len(&world.fixture.issued_topic).await >= 20).then_some(())
        },
    )
    .await;
    world.consumer.take().unwrap().kill();
    let published_before_restart = 200 - unpublished(&world).await;
    world.start_consumer();
    // The database goes away under the relay: a round that produced but could not commit is
    // published again.
    testkit::eventually(Duration::from_secs(60), "the relay resumed", || async {
        (world.fixture.topic_len(&world.fixture.issued_topic).await >= 120).then_some(())
    })
    .await;
    world.database_proxy.fail();
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.database_proxy.restore();
    testkit::eventually(Duration::from_secs(60), "the outbox drained", || async {
        (unpublished(&world).await == 0).then_some(())
    })
    .await;

    let db = world.fixture.db().await;
    let coupons: HashMap<uuid::Uuid, (String, i32)> = db
        .query("SELECT id, user_id, seq FROM coupons", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    // Read until every coupon's event is there; a lost event fails here after the wait.
    let records = testkit::eventually(
        Duration::from_secs(30),
        "every event on the topic",
        || async {
            let records = world.fixture.read_topic(&world.fixture.issued_topic).await;
            let seen: BTreeSet<String> = records.iter().filter_map(|r| r.header("ce_id")).collect();
            (seen.len() >= coupons.len()).then_some(records)
        },
    )
    .await;
    let mut ids = BTreeSet::new();
    for record in &records {
        let event = CouponIssued::decode(record.payload.as_slice()).expect("a CouponIssued");
        let id = record.header("ce_id").expect("ce_id header");
        assert_eq!(event.event_id, id, "payload and header agree");
        assert_eq!(event.coupon_id, id, "the event id is the coupon's id");
        let coupon: uuid::Uuid = event.coupon_id.parse().unwrap();
        let (user, seq) = coupons.get(&coupon).expect("an event of a real coupon");
        assert_eq!((&event.user_id, event.seq as i32), (user, *seq));
        assert_eq!(
            record.key.as_deref(),
            Some(format!("{}:{}", event.campaign_id, event.user_id).as_bytes())
        );
        assert_eq!(
            record.header("ce_type").as_deref(),
            Some("coupon.issued.v1")
        );
        assert_eq!(record.header("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(record.header("ce_subject"), Some(id), "about the coupon");
        assert_eq!(
            record.header("ce_dataschema").as_deref(),
            Some("urn:coupon:proto:coupon.v1.CouponIssued")
        );
        assert_eq!(
            record.header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert!(event.expires_at_ms > event.issued_at_ms);
        ids.insert(coupon);
    }
    let expected: BTreeSet<uuid::Uuid> = coupons.keys().copied().collect();
    assert_eq!(
        ids, expected,
        "after de-duplication, one event id per coupon"
    );
    println!(
        "outbox: 200 coupons, {} records on the topic ({} redelivered), {} published before the kill",
        records.len(),
        records.len() - ids.len(),
        published_before_restart
    );
    // And one webhook delivery id per coupon (a delivery may repeat; its id does not change).
    testkit::eventually(Duration::from_secs(60), "every coupon notified", || async {
        (hook.accepted() == 200).then_some(())
    })
    .await;
    assert_eq!(
        hook.seen().len(),
        200,
        "no delivery id beyond one per coupon"
    );
    assert_verified(&hook);
    world.check(&campaign, &answers).await;
}

/// In the Standard Webhooks form: `whsec_` and the base64 of a 24-byte key.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Every attempt the receiver got passes the Standard Webhooks reference verifier, and the same
/// attempt with its body altered by one character does not.
fn assert_verified(hook: &webhook::Webhook) {
    let received = hook.received();
    assert!(!received.is_empty());
    let verdicts = webhook::standard_verdicts(WEBHOOK_SECRET, &received);
    assert!(verdicts.iter().all(|v| v == "ok"), "{verdicts:?}");
    let mut tampered = received[0].clone();
    tampered.body = tampered.body.replacen("coupon.issued", "coupon.issueD", 1);
    assert_ne!(tampered.body, received[0].body);
    let verdicts = webhook::standard_verdicts(WEBHOOK_SECRET, &[tampered]);
    assert_eq!(
        verdicts,
        ["refused: WebhookVerificationError: No matching signature found"]
    );
}

async fn notification_counts(world: &World) -> HashMap<String, i64> {
    let db = world.fixture.db().await;
    db.query(
        "SELECT status, count(*) FROM notifications GROUP BY status",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

fn couponctl(world: &World, args: &[&str]) -> String {
    testkit::stdout_of(
        std::process::Command::new(testkit::workspace_bin("couponctl"))
            .env("DATABASE_URL", &world.fixture.database_url)
            .arg("dead-letters")
            .args(args),
    )
}

/// Webhooks: every delivery is signed and retried with backoff until the receiver accepts it;
/// a receiver that keeps failing dead-letters the notification with its reason; once the
/// receiver is fixed, `couponctl dead-letters replay` delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_retry_then_dead_letter_then_replay() {
    let hook = webhook::Webhook::start().await;
    hook.fail_first(2);
    let world = World::start_with(
        "webhooks",
        vec![
            ("WEBHOOK_URL", hook.url()),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32".to_owned()),
            ("WEBHOOK_BACKOFF_MS", "20".to_owned()),
            ("WEBHOOK_BACKOFF_MAX_MS", "100".to_owned()),
            ("WEBHOOK_MAX_ATTEMPTS", "3".to_owned()),
            ("WEBHOOK_TIMEOUT_MS", "1000".to_owned()),
        ],
    )
    .await;
    let campaign = world.open_campaign(25, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    world
        .burst(&campaign, users("w", 0..20), 8, progress.clone())
        .await;
    testkit::eventually(Duration::from_secs(60), "20 deliveries", || async {
        (notification_counts(&world).await.get("delivered") == Some(&20)).then_some(())
    })
    .await;
    let seen = hook.seen();
    assert_eq!(hook.accepted(), 20, "one delivery id per coupon");
    for (delivery, s) in &seen {
        assert_eq!((s.attempts, s.accepted), (3, 1), "{delivery}");
        // The delivery id is the `webhook-id` of every attempt.
        assert!(
            s.received
                .iter()
                .all(|a| a.headers["webhook-id"] == *delivery),
            "{delivery}"
        );
        let body = s.body.as_ref().unwrap();
        assert_eq!(body["delivery_id"], delivery.as_str());
        assert_eq!(body["type"], "coupon.issued");
    }

    // The receiver breaks: notifications end dead, with the reason kept.
    hook.fail_first(u32::MAX);
    world
        .burst(&campaign, users("w", 20..25), 5, progress)
        .await;
    testkit::eventually(Duration::from_secs(60), "5 dead notifications", || async {
        (notification_counts(&world).await.get("dead") == Some(&5)).then_some(())
    })
    .await;
    let listed = couponctl(&world, &["list"]);
    assert_eq!(listed.lines().count(), 1 + 5, "{listed}");
    assert!(listed.contains("webhook answered 500"), "{listed}");

    // Fixed receiver, replayed dead letters: delivered, each once more.
    hook.fail_first(0);
    assert!(couponctl(&world, &["replay", "--all"]).contains("replayed 5"));
    testkit::eventually(Duration::from_secs(60), "replayed deliveries", || async {
        (notification_counts(&world).await.get("delivered") == Some(&25)).then_some(())
    })
    .await;
    assert_eq!(hook.accepted(), 25);
    assert_verified(&hook);
    assert_eq!(couponctl(&world, &["list"]).lines().count(), 1);
}
