//! Campaign events with real processes: however many consumer pods race (their batches and
//! their relays' announcers), each campaign's `opened`, `sold-out` and `closed` is published
//! with one event id, carrying the figures and moment it happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use prost::Message as _;
use schema::proto::{CampaignEvent, campaign_event::Kind};
use time::OffsetDateTime;

use testkit::{World, users};

mod downstream_python;

/// (campaign, kind) -> the distinct event ids published for it, with the last record's message.
type Published = BTreeMap<(String, i32), (BTreeSet<String>, CampaignEvent)>;

async fn published(world: &World) -> Published {
    let mut events = Published::new();
    for record in world.fixture.read_topic(&world.fixture.events_topic).await {
        let event = CampaignEvent::decode(record.payload.as_slice()).expect("a CampaignEvent");
        assert_eq!(
            record.header("ce_id").as_deref(),
            Some(event.event_id.as_str())
        );
        assert_eq!(
            record.key.as_deref(),
            Some(event.campaign_id.as_bytes()),
            "keyed by campaign"
        );
        let ce_type = match Kind::try_from(event.kind) {
            Ok(Kind::Opened) => schema::topics::CAMPAIGN_OPENED_TYPE,
            Ok(Kind::SoldOut) => schema::topics::CAMPAIGN_SOLD_OUT_TYPE,
            Ok(Kind::Closed) => schema::topics::CAMPAIGN_CLOSED_TYPE,
            other => panic!("unexpected kind {other:?}"),
        };
        assert_eq!(record.header("ce_type").as_deref(), Some(ce_type));
        assert_eq!(
            record.header("schema").as_deref(),
            Some(schema::topics::CAMPAIGN_EVENT_SCHEMA)
        );
        let entry = events
            .entry((event.campaign_id.clone(), event.kind))
            .or_insert_with(|| (BTreeSet::new(), event.clone()));
        entry.0.insert(event.event_id.clone());
        entry.1 = event;
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_campaign_event_is_published_once_by_racing_consumers() {
    let mut world = World::start("campaign-events").await;
    // Three members of the group, each with a relay and its announcer.
    let _others = [
        world.spawn_consumer("consumer-2"),
        world.spawn_consumer("consumer-3"),
    ];
    let now = OffsetDateTime::now_utc();
    let seconds = |s: u64| Duration::from_secs(s);
    // A drop that sells out in a burst, then is closed by its operator.
    let drop = world.open_campaign(100, 1).await;
    // A short window nobody comes to: it opens and ends by the clock.
    let short = world
        .campaign_with_window(10, 1, now + seconds(2), now + seconds(4))
        .await;
    // Closed before its start: it never opened.
    let never = world
        .campaign_with_window(10, 1, now + seconds(3600), now + seconds(7200))
        .await;
    assert_eq!(world.close_campaign(&never).await.status(), 200);

    let answers = world
        .burst(&drop, users("e", 0..300), 32, Arc::new(AtomicUsize::new(0)))
        .await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 100);
    world.fixture.wait_for_rows(100, "the drop persisted").await;
    assert_eq!(world.close_campaign(&drop).await.status(), 200);
    // A consumer killed along the way changes nothing: another relay takes over.
    world.consumer.take().unwrap().kill();

    let expected: BTreeSet<(String, i32)> = [
        (drop.clone(), Kind::Opened as i32),
        (drop.clone(), Kind::SoldOut as i32),
        (drop.clone(), Kind::Closed as i32),
        (short.clone(), Kind::Opened as i32),
        (short.clone(), Kind::Closed as i32),
        (never.clone(), Kind::Closed as i32),
    ]
    .into();
    let events = testkit::eventually(Duration::from_secs(30), "six campaign events", || async {
        let events = published(&world).await;
        (events.keys().cloned().collect::<BTreeSet<_>>() == expected).then_some(events)
    })
    .await;
    // Give a duplicate queueing time to show up, then look again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = {
        let again = published(&world).await;
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            events.keys().collect::<Vec<_>>(),
            "nothing new was published"
        );
        again
    };
    for (key, (ids, _)) in &events {
        assert_eq!(ids.len(), 1, "one event id for {key:?}: {ids:?}");
    }
    let event = |campaign: &str, kind: Kind| events[&(campaign.to_owned(), kind as i32)].1.clone();
    let sold_out = event(&drop, Kind::SoldOut);
    assert_eq!((sold_out.issued, sold_out.total_stock), (100, 100));
    let opened = event(&drop, Kind::Opened);
    let closed = event(&drop, Kind::Closed);
    assert!(opened.occurred_at_ms <= sold_out.occurred_at_ms);
    assert!(sold_out.occurred_at_ms <= closed.occurred_at_ms);
    assert_eq!(closed.issued, 100);
    let short_opened = event(&short, Kind::Opened);
    let short_closed = event(&short, Kind::Closed);
    assert_eq!(
        short_closed.occurred_at_ms - short_opened.occurred_at_ms,
        2_000,
        "the window's own start and end"
    );
    let db = world.fixture.db().await;
    let queued: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE kind LIKE 'campaign.%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 6, "each event queued once");
}
