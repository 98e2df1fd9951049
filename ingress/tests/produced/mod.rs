//! What the ingress produces: each accepted request is one record on the requested-issuance
//! topic, a protobuf payload with CloudEvents headers and the MAC of an event key; keys rotate
//! without interrupting issuance.

use std::time::{Duration, Instant};

use prost::Message as _;

use crate::support::{Options, Stack};

mod rotation;

/// The requested-issuance topic's records say what they are: CloudEvents headers with the
/// issuance id as event id, the admission time, the schema, and the protobuf payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_events_carry_their_headers() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let response = stack.request(&campaign, "headed").await;
    assert_eq!(response.status(), 202);
    let accepted: serde_json::Value = response.json().await.unwrap();
    let id = accepted["issuance_id"].as_str().unwrap().to_owned();
    let records = testkit::eventually(Duration::from_secs(10), "the event", || async {
        let records = stack.fixture.read_topic(&stack.fixture.topic).await;
        (!records.is_empty()).then_some(records)
    })
    .await;
    let record = &records[0];
    let event = schema::proto::IssuanceRequested::decode(record.payload.as_slice()).unwrap();
    assert_eq!(event.issuance_id, id);
    for (name, value) in [
        ("ce_specversion", "1.0"),
        ("ce_id", id.as_str()),
        ("ce_type", "coupon.issuance.requested.v1"),
        ("ce_source", "/coupon-issuance"),
        ("content-type", "application/x-protobuf"),
        ("schema", "coupon.v1.IssuanceRequested"),
        ("schema-version", "1"),
        ("ce_subject", id.as_str()),
        (
            "ce_dataschema",
            "urn:coupon:proto:coupon.v1.IssuanceRequested",
        ),
    ] {
        assert_eq!(record.header(name).as_deref(), Some(value), "{name}");
    }
    // Signed with the database's one key, over the record's key and payload.
    let keys = service::event_keys::read(&stack.fixture.db().await)
        .await
        .unwrap();
    let signature = record.header(service::event_keys::HEADER).unwrap();
    assert!(signature.starts_with("v1,1,"), "{signature}");
    assert_eq!(
        keys.verify(
            Some(signature.as_bytes()),
            record.key.as_deref().unwrap(),
            &record.payload,
            Instant::now()
        ),
        Ok(1)
    );
    let time = record.header("ce_time").unwrap();
    let parsed =
        time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(
        (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
        event.requested_at_ms
    );
}

/// Without event keys (here: a database that never had the table) the ingress starts, but
/// answers 503 to issuance before reserving anything: it never produces an unsigned event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_event_keys_issuance_is_503_and_nothing_is_reserved_or_produced() {
    let stack = Stack::start(Options {
        partitions: 1,
        consumer: false,
        extra: Vec::new(),
    })
    .await;
    let campaign = stack.open_campaign(5, 1).await;
    // The keys vanish from the ledger; a fresh ingress on it cannot read any.
    stack
        .fixture
        .db()
        .await
        .batch_execute("ALTER TABLE event_keys RENAME TO event_keys_away")
        .await
        .unwrap();
    let mut config = stack.app.config.clone();
    config.event_keys.refresh_ms = 100;
    let keyless = ingress::App::build(config)
        .await
        .expect("starts without keys");
    assert!(!keyless.publisher.can_sign());
    let before = stack.fixture.redis_snapshot().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(ingress::run(listener, ops, keyless.clone(), async {
        let _ = stopped.await;
    }));
    let api = testkit::Api::new(base, reqwest::Client::new());
    let refused = api.request(&campaign, "keyless").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        stack.fixture.redis_snapshot().await,
        before,
        "nothing reserved"
    );
    assert_eq!(stack.fixture.topic_len(&stack.fixture.topic).await, 0);

    // The keys come back: the next refresh reads them and issuance works again.
    stack
        .fixture
        .db()
        .await
        .batch_execute("ALTER TABLE event_keys_away RENAME TO event_keys")
        .await
        .unwrap();
    testkit::eventually(Duration::from_secs(30), "the keys read", || async {
        keyless.publisher.can_sign().then_some(())
    })
    .await;
    assert_eq!(api.request(&campaign, "keyless").await.status(), 202);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), served).await;
}
