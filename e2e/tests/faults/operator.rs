//! Case (f): operators' changes racing each other and a burst, through two ingress processes
//! (SPEC I7). Two limit changes race before the start; then, mid-burst, stock is added, and
//! more stock races a close. The gate must end with the ledger's settings (the ledger's order, whatever order the
//! gate calls arrived in), nobody over the limit the ledger kept, every 202 issued, and nothing
//! admitted at or after the close (`World::check`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use testkit::{World, after, gate_copy, users};

/// The ledger's settings of a campaign as the gate's meta spells them.
async fn ledger_settings(world: &World, campaign: &str) -> Vec<String> {
    gate_copy::as_meta(&gate_copy::ledger(&world.fixture.db().await, campaign).await)
}

/// The gate's meta hash of a campaign.
async fn gate_meta(world: &World, campaign: &str) -> HashMap<String, String> {
    gate_copy::meta(&world.redis.url(), &world.fixture.redis_prefix, campaign).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_changes_racing_each_other_and_a_burst_land_in_the_ledgers_order() {
    let mut world = World::start("operator-race").await;
    world.start_second_ingress().await;
    let starts_at = OffsetDateTime::now_utc() + Duration::from_secs(3);
    let campaign = world
        .campaign_with_window(150, 1, starts_at, starts_at + Duration::from_secs(3600))
        .await;

    // Before the start: two limit changes race, one through each ingress process.
    let apis = world.apis();
    let (three, two) = (json!({"per_user_limit": 3}), json!({"per_user_limit": 2}));
    let (a, b) = tokio::join!(
        apis[0].patch_campaign(&campaign, &three),
        apis[1].patch_campaign(&campaign, &two),
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let raced = ledger_settings(&world, &campaign).await;
    assert_eq!(raced[5], "3", "each change has its own version");
    assert_eq!(
        gate_copy::settings(&gate_meta(&world, &campaign).await),
        raced
    );

    let wait = starts_at - OffsetDateTime::now_utc() + Duration::from_millis(200);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;

    // Mid-burst: a stock increase, then another one racing a close, each pair through both
    // processes.
    let progress = Arc::new(AtomicUsize::new(0));
    let (rush, (grown, closed)) = tokio::join!(
        world.rush(&campaign, users("o", 0..120), 4, 16, progress.clone()),
        async {
            after(&progress, 60).await;
            let apis = world.apis();
            let more = json!({"total_stock": 200});
            let first = apis[1].patch_campaign(&campaign, &more).await;
            assert_eq!(first.status(), 200, "stock added during the burst");
            after(&progress, 100).await;
            let more = json!({"total_stock": 250});
            tokio::join!(
                apis[0].patch_campaign(&campaign, &more),
                apis[1].close_campaign(&campaign),
            )
        }
    );
    assert_eq!(closed.status(), 200);
    // The stock change commits before the close (200) or after it (409: the campaign is closed).
    assert!(
        [200, 409].contains(&grown.status().as_u16()),
        "{}",
        grown.status()
    );
    let held = rush
        .attempts
        .iter()
        .filter(|a| a.status == 503 && a.retry_after.is_some())
        .count();
    println!(
        "case {}: stock change {}, 503s while the close was between gate and ledger {held}",
        world.name,
        grown.status()
    );
    assert!(
        rush.answers
            .iter()
            .all(|a| [202, 403, 409, 410].contains(&a.status)),
        "every request ends admitted or refused"
    );
    assert_eq!(world.request(&campaign, "late").await.status(), 403);

    world.check(&campaign, &rush.answers).await;
    let ledger = ledger_settings(&world, &campaign).await;
    assert_eq!(ledger[4], "1", "closed");
    assert!(
        ledger[0] == "200" || ledger[0] == "250",
        "stock {}",
        ledger[0]
    );
    let meta = gate_meta(&world, &campaign).await;
    assert_eq!(
        gate_copy::settings(&meta),
        ledger,
        "the gate holds the ledger's settings"
    );
    assert!(!meta.contains_key("hold"), "no hold left behind");
}
