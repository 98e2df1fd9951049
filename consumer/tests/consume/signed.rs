//! Only what the ingress signed becomes a coupon: a well-formed event without a valid
//! `coupon-signature` is dead-lettered with its reason and counted, never persisted; keys
//! created after start are read on first sight, retired ones are refused.

use prost::Message as _;
use service::event_keys::header_value;

use super::{Running, event, read_all};

/// What an attacker with access to the topic but not to the keys can write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_event_is_dead_lettered_and_never_persisted() {
    let running = Running::start().await;
    let campaign = running.campaign(10).await;
    let forge = |user: &str| {
        let e = event(campaign, user, 1);
        (
            schema::topics::record_key(&e.campaign_id, &e.user_id),
            e.encode_to_vec(),
        )
    };
    let guess = b"a guess at the key, thirty-two b";

    let (key, payload) = forge("unsigned");
    running.produce_with(&key, &payload, None).await;
    let (key, payload) = forge("guessed");
    let signature = header_value(1, guess, key.as_bytes(), &payload);
    running.produce_with(&key, &payload, Some(&signature)).await;
    let (key, payload) = forge("unknown-key");
    let signature = header_value(77, guess, key.as_bytes(), &payload);
    running.produce_with(&key, &payload, Some(&signature)).await;
    let (key, payload) = forge("malformed");
    running
        .produce_with(&key, &payload, Some("v1,1,not-base64"))
        .await;
    // A genuine signature, moved onto another user's event.
    let (key, payload) = forge("genuine");
    let genuine = running.fixture.sign_event(key.as_bytes(), &payload).await;
    let (key, payload) = forge("moved");
    running.produce_with(&key, &payload, Some(&genuine)).await;
    running.produce_event(&event(campaign, "signed", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'signed'", 1)
        .await;

    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 1);
    assert_eq!(
        running
            .count("SELECT count(*) FROM issuance_rejections")
            .await,
        0
    );
    let dead = read_all(&running.fixture.dead_letter_topic, 5).await;
    let reasons: Vec<&str> = dead.iter().map(|(reason, _)| reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "unsigned event: no coupon-signature header",
            "event signature does not match (key 1)",
            "event signed with an unknown or retired key (77)",
            "malformed coupon-signature header",
            "event signature does not match (key 1)",
        ]
    );
    // Kept as sent: the payload still decodes to the forged event.
    let kept = schema::proto::IssuanceRequested::decode(dead[0].1.as_slice()).unwrap();
    assert_eq!(kept.user_id, "unsigned");
    for (reason, series) in [
        ("missing", 1.0),
        ("mismatch", 2.0),
        ("unknown-key", 1.0),
        ("malformed", 1.0),
    ] {
        assert_eq!(
            running.metric(&format!(
                "coupon_events_refused_total{{reason=\"{reason}\"}}"
            )),
            series,
            "{reason}"
        );
    }
    assert_eq!(running.metric("coupon_dead_letters_total"), 5.0);
}

/// A key created while the consumer runs (a rotation whose activation came sooner than the
/// next refresh) is read when its first event arrives; a retired key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_read_on_first_sight_and_a_retired_one_is_refused() {
    let mut running = Running::start().await;
    let campaign = running.campaign(10).await;
    running.produce_event(&event(campaign, "before", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'before'", 1)
        .await;
    let db = running.fixture.db().await;
    let new_key: i32 = db
        .query_one(
            "INSERT INTO event_keys (secret) VALUES (decode(repeat('5a', 32), 'hex')) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let after = event(campaign, "after", 1);
    let key = schema::topics::record_key(&after.campaign_id, &after.user_id);
    let signature = running
        .fixture
        .sign_event(key.as_bytes(), &after.encode_to_vec())
        .await;
    assert!(
        signature.starts_with(&format!("v1,{new_key},")),
        "{signature}"
    );
    running.produce_event(&after).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'after'", 1)
        .await;

    // Key 1 retired: a consumer that read the keys since refuses what it signs.
    let old_secret: Vec<u8> = db
        .query_one(
            "UPDATE event_keys SET retired_at = now() WHERE id = 1 RETURNING secret",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    running.stop_consumer().await;
    running.spawn_consumer();
    let late = event(campaign, "late", 1);
    let key = schema::topics::record_key(&late.campaign_id, &late.user_id);
    let payload = late.encode_to_vec();
    let signature = header_value(1, &old_secret, key.as_bytes(), &payload);
    running.produce_with(&key, &payload, Some(&signature)).await;
    running.produce_event(&event(campaign, "sentinel", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'sentinel'", 1)
        .await;
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 3);
    let dead = read_all(&running.fixture.dead_letter_topic, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "event signed with an unknown or retired key (1)");
    assert_eq!(
        running.metric("coupon_events_refused_total{reason=\"unknown-key\"}"),
        1.0
    );
}

/// Any client that reaches the broker can write a header name that is not UTF-8 (the protocol
/// keeps header names as bytes), and the binding panics reading one. Even validly signed, such
/// a record is dead-lettered without its headers, never persisted, and what follows it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_header_name_is_not_utf8_is_dead_lettered_and_what_follows_is_persisted() {
    use testkit::raw_kafka::{self, RawRecord};

    let running = Running::start().await;
    let campaign = running.campaign(10).await;
    let hostile = event(campaign, "hostile", 1);
    let key = schema::topics::record_key(&hostile.campaign_id, &hostile.user_id);
    let payload = hostile.encode_to_vec();
    let signature = running.fixture.sign_event(key.as_bytes(), &payload).await;
    let record = RawRecord {
        key: Some(key.into_bytes()),
        value: Some(payload.clone()),
        headers: vec![
            (vec![0xff, 0xfe], Some(b"not a name".to_vec())),
            (
                service::event_keys::HEADER.as_bytes().to_vec(),
                Some(signature.into_bytes()),
            ),
        ],
    };
    let fixture = &running.fixture;
    let offset = raw_kafka::produce(&fixture.brokers, &fixture.topic, 0, &record)
        .await
        .unwrap();
    assert_eq!(offset, 0);
    running.produce_event(&event(campaign, "after", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'after'", 1)
        .await;

    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 1);
    assert_eq!(
        running
            .count("SELECT count(*) FROM issuance_rejections")
            .await,
        0
    );
    let dead = read_all(&fixture.dead_letter_topic, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "a header name is not UTF-8");
    assert_eq!(dead[0].1, payload, "kept as sent");
    // Only the dead letter's own headers: the unreadable ones stay behind.
    let kept = fixture.read_topic(&fixture.dead_letter_topic).await;
    let names: Vec<&str> = kept[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "dlq-reason",
            "dlq-source-topic",
            "dlq-source-partition",
            "dlq-source-offset"
        ]
    );
    assert_eq!(kept[0].header("dlq-source-offset").as_deref(), Some("0"));
    assert_eq!(running.metric("coupon_dead_letters_total"), 1.0);
}
