//! Operator decisions in the gate on a real Redis: settings applied by version whatever order
//! their calls arrive in, stock and the window's end only growing, a close that stays, and the
//! hold that pauses admissions while a change is between the gate and the ledger.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::Duration;

use gate::ledger::Settings;
use gate::settings::{Adjusted, HOLD_LAPSE};
use gate::{Endpoint, Gate, Reservation, Seed};
use schema::ids::{CampaignId, UserId};
use time::OffsetDateTime;

struct Setup {
    gate: Gate,
    fixture: testkit::Fixture,
}

async fn setup() -> Setup {
    let fixture = testkit::Fixture::new(1).await;
    let endpoint = Endpoint {
        url: testkit::redis_url(),
        ..Endpoint::default()
    };
    let gate = Gate::connect(
        &endpoint,
        &fixture.redis_prefix,
        Duration::from_secs(2),
        Duration::from_secs(7),
    )
    .await
    .unwrap();
    // Loads the admission scripts (no campaign to check).
    gate.secure(&[], 0).await.unwrap();
    Setup { gate, fixture }
}

fn now_ms() -> i64 {
    schema::time::unix_ms(OffsetDateTime::now_utc())
}

/// Seeds an open campaign (version 1) and returns its ledger settings at version 1.
async fn open_campaign(gate: &Gate, total: u32, limit: u32) -> Settings {
    let id = CampaignId(uuid::Uuid::now_v7());
    let (starts_ms, ends_ms) = (now_ms() - 60_000, now_ms() + 3_600_000);
    gate.seed(
        &id,
        Seed {
            total_stock: total,
            per_user_limit: limit,
            starts_ms,
            ends_ms,
        },
    )
    .await
    .unwrap();
    Settings {
        id,
        total_stock: total,
        per_user_limit: limit,
        starts_ms,
        ends_ms,
        closed: false,
        version: 1,
    }
}

impl Setup {
    async fn meta(&self, campaign: &CampaignId) -> HashMap<String, String> {
        let key = format!("{}{{c:{campaign}}}:meta", self.fixture.redis_prefix);
        redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut self.fixture.redis().await)
            .await
            .unwrap()
    }

    async fn field(&self, campaign: &CampaignId, field: &str) -> Option<String> {
        self.meta(campaign).await.get(field).cloned()
    }

    async fn reserve(&self, campaign: &CampaignId, user: &str) -> Reservation {
        self.gate
            .reserve(
                campaign,
                &UserId::parse(user).unwrap(),
                &uuid::Uuid::now_v7(),
            )
            .await
            .unwrap()
    }
}

/// The gate's copy of the settings: total, limit, ends_ms, closed, version.
async fn settings_of(setup: &Setup, campaign: &CampaignId) -> [String; 5] {
    let meta = setup.meta(campaign).await;
    ["total", "limit", "ends_ms", "closed", "version"].map(|f| meta[f].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_version_wins_whatever_order_the_calls_arrive_in() {
    let setup = setup().await;
    let gate = &setup.gate;
    let v1 = open_campaign(gate, 10, 1).await;
    let v2 = Settings {
        per_user_limit: 2,
        total_stock: 15,
        version: 2,
        ..v1
    };
    let v3 = Settings {
        per_user_limit: 3,
        total_stock: 20,
        ends_ms: v1.ends_ms + 60_000,
        version: 3,
        ..v1
    };
    // Version 3 arrives first, version 2 late: the gate keeps version 3's values.
    assert_eq!(gate.adjust(&v3).await.unwrap(), Adjusted::Applied);
    assert_eq!(gate.adjust(&v2).await.unwrap(), Adjusted::Current);
    assert_eq!(gate.adjust(&v3).await.unwrap(), Adjusted::Current);
    assert_eq!(
        settings_of(&setup, &v1.id).await,
        [
            "20".to_owned(),
            "3".to_owned(),
            (v1.ends_ms + 60_000).to_string(),
            "0".to_owned(),
            "3".to_owned()
        ]
    );
    assert_eq!(setup.field(&v1.id, "remaining").await.unwrap(), "20");
    // A campaign the gate does not know is left alone.
    let unknown = Settings {
        id: CampaignId(uuid::Uuid::now_v7()),
        ..v3
    };
    assert_eq!(gate.adjust(&unknown).await.unwrap(), Adjusted::Unknown);
    assert!(setup.meta(&unknown.id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_and_the_end_only_grow_and_a_close_stays() {
    let setup = setup().await;
    let gate = &setup.gate;
    let v1 = open_campaign(gate, 10, 1).await;
    assert!(matches!(
        setup.reserve(&v1.id, "first").await,
        Reservation::Accepted { .. }
    ));
    // Stock grows during admissions: remaining grows by the difference.
    let grown = Settings {
        total_stock: 30,
        version: 2,
        ..v1
    };
    gate.adjust(&grown).await.unwrap();
    assert_eq!(setup.field(&v1.id, "remaining").await.unwrap(), "29");
    // A newer version with less stock and an earlier end shrinks neither.
    let shrunk = Settings {
        total_stock: 5,
        ends_ms: v1.ends_ms - 60_000,
        version: 3,
        ..v1
    };
    assert_eq!(gate.adjust(&shrunk).await.unwrap(), Adjusted::Applied);
    let meta = setup.meta(&v1.id).await;
    assert_eq!(
        (
            meta["total"].as_str(),
            meta["remaining"].as_str(),
            meta["ends_ms"].clone()
        ),
        ("30", "29", v1.ends_ms.to_string())
    );
    // Closed, then a newer version saying open: it stays closed and admits nobody.
    let closed = Settings {
        total_stock: 30,
        closed: true,
        version: 4,
        ..v1
    };
    gate.adjust(&closed).await.unwrap();
    let reopened = Settings {
        closed: false,
        version: 5,
        ..closed
    };
    assert_eq!(gate.adjust(&reopened).await.unwrap(), Adjusted::Applied);
    assert_eq!(setup.field(&v1.id, "closed").await.unwrap(), "1");
    assert_eq!(setup.reserve(&v1.id, "second").await, Reservation::NotOpen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_pauses_admissions_until_its_version_is_applied() {
    let setup = setup().await;
    let gate = &setup.gate;
    let v1 = open_campaign(gate, 10, 1).await;
    let Reservation::Accepted { requested_ms, .. } = setup.reserve(&v1.id, "before").await else {
        panic!("admitted before the hold");
    };
    let hold = gate.hold(&v1.id, 2, v1.starts_ms).await.unwrap();
    assert!(hold.known && hold.started);
    assert_eq!(hold.accepted, 1);
    // The hold's instant follows every admission made before it: a close's `closed_at`.
    assert!(hold.since_ms > requested_ms);
    assert_eq!(
        setup.field(&v1.id, "hold").await.unwrap(),
        format!("2:{}", hold.since_ms)
    );
    assert_eq!(setup.reserve(&v1.id, "during").await, Reservation::Held);
    // The sweeper re-applying the ledger's version 1 (the change has not committed yet) keeps
    // the hold.
    assert_eq!(gate.adjust(&v1).await.unwrap(), Adjusted::Current);
    assert_eq!(setup.reserve(&v1.id, "during").await, Reservation::Held);
    // The change's version applied: the hold is lifted.
    let v2 = Settings {
        total_stock: 12,
        version: 2,
        ..v1
    };
    assert_eq!(gate.adjust(&v2).await.unwrap(), Adjusted::Applied);
    assert_eq!(setup.field(&v1.id, "hold").await, None);
    assert!(matches!(
        setup.reserve(&v1.id, "after").await,
        Reservation::Accepted { .. }
    ));
    // The gate does not know a campaign: no hold, but the clock's verdict on the start.
    let unknown = CampaignId(uuid::Uuid::now_v7());
    let hold = gate.hold(&unknown, 2, now_ms() + 60_000).await.unwrap();
    assert!(!hold.known && !hold.started);
    assert!(setup.meta(&unknown).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_lifts_only_its_own_hold_and_never_past_a_missing_version() {
    let setup = setup().await;
    let gate = &setup.gate;
    let v1 = open_campaign(gate, 10, 1).await;
    // A refused change lifts its hold.
    let hold = gate.hold(&v1.id, 2, v1.starts_ms).await.unwrap();
    assert!(gate.unhold(&v1.id, &hold, 1).await.unwrap());
    assert_eq!(setup.field(&v1.id, "hold").await, None);
    // Change A (version 2) committed but its gate call failed; change B (version 3) holds,
    // then is refused. A's version is missing from the gate: admissions stay held for it.
    let a = gate.hold(&v1.id, 2, v1.starts_ms).await.unwrap();
    let b = gate.hold(&v1.id, 3, v1.starts_ms).await.unwrap();
    assert!(
        !gate.unhold(&v1.id, &a, 1).await.unwrap(),
        "not A's hold any more"
    );
    assert!(!gate.unhold(&v1.id, &b, 2).await.unwrap());
    let held = setup.field(&v1.id, "hold").await.unwrap();
    assert!(held.starts_with("2:"), "{held}");
    assert_eq!(setup.reserve(&v1.id, "u").await, Reservation::Held);
    // The sweeper applies the ledger's version 2: admissions resume.
    let v2 = Settings {
        total_stock: 11,
        version: 2,
        ..v1
    };
    assert_eq!(gate.adjust(&v2).await.unwrap(), Adjusted::Applied);
    assert!(matches!(
        setup.reserve(&v1.id, "u").await,
        Reservation::Accepted { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_whose_change_died_lapses() {
    let setup = setup().await;
    let gate = &setup.gate;
    let v1 = open_campaign(gate, 10, 1).await;
    // A change held version 2 and died before its commit, longer ago than the lapse.
    let key = format!("{}{{c:{}}}:meta", setup.fixture.redis_prefix, v1.id);
    let long_ago = now_ms() - HOLD_LAPSE.as_millis() as i64 - 1_000;
    redis::cmd("HSET")
        .arg(&key)
        .arg("hold")
        .arg(format!("2:{long_ago}"))
        .query_async::<()>(&mut setup.fixture.redis().await)
        .await
        .unwrap();
    assert_eq!(setup.reserve(&v1.id, "u").await, Reservation::Held);
    assert_eq!(gate.adjust(&v1).await.unwrap(), Adjusted::Current);
    assert_eq!(setup.field(&v1.id, "hold").await, None);
    assert!(matches!(
        setup.reserve(&v1.id, "u").await,
        Reservation::Accepted { .. }
    ));
    // A recent hold of a change still running stays.
    gate.hold(&v1.id, 2, v1.starts_ms).await.unwrap();
    assert_eq!(gate.adjust(&v1).await.unwrap(), Adjusted::Current);
    assert!(setup.field(&v1.id, "hold").await.is_some());
}
