//! The gate on a real Redis: its Lua scripts against the pure reservation rules, on one server
//! and on a three-master Redis Cluster (plaintext and TLS); `managed`: TLS and the settings.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::time::Duration;

use gate::rules::{CampaignGate, Decision, Model};
use gate::{Endpoint, Gate, Reservation, Seed};
use schema::ids::{CampaignId, UserId};
use time::OffsetDateTime;

mod cluster;
mod expiry;
mod loss;
mod managed;

/// A gate with its admission scripts loaded (no ledger campaign to check: the tests seed
/// their own).
pub async fn connect(endpoint: &Endpoint, prefix: &str) -> Result<Gate, gate::GateError> {
    let gate = Gate::connect(
        endpoint,
        prefix,
        Duration::from_secs(2),
        Duration::from_secs(7),
    )
    .await?;
    gate.secure(&[], 0).await?;
    Ok(gate)
}

/// The gate script against the pure rules, on the shared Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_script_matches_the_reservation_rules() {
    let fixture = testkit::Fixture::new(1).await;
    let endpoint = Endpoint {
        url: testkit::redis_url(),
        ..Endpoint::default()
    };
    let gate = connect(&endpoint, &fixture.redis_prefix).await.unwrap();
    script_matches_the_rules(&gate).await;
}

/// Random request sequences over campaigns of random stock and limit must get exactly the
/// decisions the model makes. Returns the campaigns it seeded.
pub async fn script_matches_the_rules(gate: &Gate) -> Vec<CampaignId> {
    let mut campaigns = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for _ in 0..20 {
        let stock = next(15) as u32;
        let limit = 1 + next(3) as u32;
        let campaign = CampaignId(uuid::Uuid::now_v7());
        campaigns.push(campaign);
        let window = (now_ms - 60_000, now_ms + 3_600_000);
        gate.seed(
            &campaign,
            Seed {
                total_stock: stock,
                per_user_limit: limit,
                starts_ms: window.0,
                ends_ms: window.1,
            },
        )
        .await
        .unwrap();
        let mut model = Model::new(CampaignGate {
            remaining: stock,
            per_user_limit: limit,
            starts_ms: window.0,
            ends_ms: window.1,
            closed: false,
            fenced: false,
            held: false,
        });
        let mut last_id: HashMap<String, uuid::Uuid> = HashMap::new();
        for _ in 0..40 {
            let user = format!("u{}", next(8));
            let id = uuid::Uuid::now_v7();
            let got = gate
                .reserve(&campaign, &UserId::parse(&user).unwrap(), &id)
                .await
                .unwrap();
            let want = model.request(&user, now_ms);
            match (want, got) {
                (Decision::Accept { seq }, Reservation::Accepted { seq: got_seq, .. }) => {
                    assert_eq!(seq, got_seq);
                    last_id.insert(user, id);
                }
                (Decision::AlreadyHeld { .. }, Reservation::Duplicate { reservation }) => {
                    assert_eq!(reservation, last_id.get(&user).copied());
                }
                (Decision::SoldOut, Reservation::SoldOut)
                | (Decision::NotOpen, Reservation::NotOpen) => {}
                (want, got) => panic!("model says {want:?}, gate says {got:?}"),
            }
        }
        let figures = gate.figures(&campaign).await.unwrap().unwrap();
        assert_eq!(figures.remaining, i64::from(model.gate.remaining));
        assert_eq!(figures.accepted, i64::from(model.accepted));
    }
    let unknown = CampaignId(uuid::Uuid::now_v7());
    let got = gate
        .reserve(
            &unknown,
            &UserId::parse("u").unwrap(),
            &uuid::Uuid::now_v7(),
        )
        .await
        .unwrap();
    assert_eq!(got, Reservation::UnknownCampaign);
    campaigns
}
