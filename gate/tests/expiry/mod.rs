//! Bounded Redis memory: every key of a campaign expires its retention after the campaign's end,
//! including the keys admissions created, and an end moved later moves the expiry with it.

use std::time::Duration;

use gate::{Reservation, Seed};
use schema::ids::{CampaignId, IssuanceId, UserId};
use time::OffsetDateTime;

async fn pttl(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(redis)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_keys_expire_after_its_end_and_retention() {
    let fixture = testkit::Fixture::new(1).await;
    let endpoint = gate::Endpoint {
        url: testkit::redis_url(),
        ..gate::Endpoint::default()
    };
    let retention = Duration::from_millis(1_500);
    let gate = super::connect(&endpoint, &fixture.redis_prefix)
        .await
        .unwrap()
        .with_retention(retention);
    let id = CampaignId(uuid::Uuid::now_v7());
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1_000;
    let ends_ms = now_ms + 1_000;
    gate.seed(
        &id,
        Seed {
            total_stock: 5,
            per_user_limit: 1,
            starts_ms: now_ms - 60_000,
            ends_ms,
        },
    )
    .await
    .unwrap();
    let issuance = IssuanceId::new(id);
    let admitted = gate
        .reserve(&id, &UserId::parse("u").unwrap(), &issuance.reservation)
        .await
        .unwrap();
    assert!(
        matches!(admitted, Reservation::Accepted { .. }),
        "{admitted:?}"
    );
    assert!(gate.release(&issuance, 1, "kafka-refused").await.unwrap());
    let kept = IssuanceId::new(id);
    gate.reserve(&id, &UserId::parse("v").unwrap(), &kept.reservation)
        .await
        .unwrap();

    let tag = format!("{}{{c:{id}}}", fixture.redis_prefix);
    let keys: Vec<String> = ["meta", "holders", "slots", "journal", "released"]
        .iter()
        .map(|k| format!("{tag}:{k}"))
        .collect();
    let mut redis = fixture.redis().await;
    // Keys an admission created carry no expiry until the sweeper's round sets it.
    assert_eq!(
        pttl(&mut redis, &keys[4]).await,
        -1,
        "released has no expiry yet"
    );
    gate.expire(&id, ends_ms).await.unwrap();
    for key in &keys {
        let left = pttl(&mut redis, key).await;
        assert!(left > 0 && left <= 2_600, "{key}: {left} ms left");
    }
    // The end moved later: the expiry follows.
    gate.expire(&id, ends_ms + 60_000).await.unwrap();
    assert!(pttl(&mut redis, &keys[0]).await > 60_000);
    gate.expire(&id, ends_ms).await.unwrap();
    testkit::eventually(Duration::from_secs(10), "the keys to expire", || async {
        let mut redis = fixture.redis().await;
        let left: i64 = redis::cmd("EXISTS")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    assert!(gate.figures(&id).await.unwrap().is_none());
}
