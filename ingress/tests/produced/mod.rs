//! What the ingress produces: each accepted request is one record on the requested-issuance
//! topic, a protobuf payload with CloudEvents headers.

use std::time::Duration;

use prost::Message as _;

use crate::support::Stack;

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
    ] {
        assert_eq!(record.header(name).as_deref(), Some(value), "{name}");
    }
    let time = record.header("ce_time").unwrap();
    let parsed =
        time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(
        (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
        event.requested_at_ms
    );
}
