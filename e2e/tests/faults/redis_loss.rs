//! Redis loses acknowledged writes mid-burst, in each way a production Redis does (SPEC I3, I7):
//! (a) restarted empty; (b) SIGKILLed and restarted from an AOF cut where `appendfsync everysec`
//! had last synced; (c) restored from an RDB snapshot taken earlier in the drop; (d) a replica
//! promoted while behind, the gate's one address moved to it; and (e) an operator's close, stock
//! increase and limit change made between what Redis kept and what it lost, with (a) to (c).
//!
//! Every case runs two ingress processes, keeps the consumer paused across the loss (events wait
//! in Kafka: lag > 0), and has users request up to four times against per-user limits of 1 and
//! 3, retrying a 503 after its `Retry-After`. The gate must notice the loss before it admits
//! anyone again, fence (503 with `Retry-After`) and re-seed from a ledger caught up with every
//! event in Kafka. After each case: every 202 issued, nothing rejected, nobody over the limit, no
//! oversell, earlier holders refused (409), a closed campaign admitting nobody, `couponctl verify`
//! clean (`World::check`). Each case prints its 202s, issued, rejected and the fence as clients
//! saw it (first 503 with `Retry-After` to the next 202); docs/RELIABILITY.md quotes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use testkit::redis_faults::{AofMark, Identity, Snapshot};
use testkit::world::{Rush, Services};
use testkit::{PrivateRedis, World, users};

/// Requests per user: one past a limit of 3.
const TIMES: usize = 4;
/// Users at once, per campaign.
const CONCURRENCY: usize = 16;
/// How long the consumer stays paused after the loss: past the gate's in-flight window (the
/// message timeout plus the journal's grace), so only a re-seed that waits for the ledger to
/// catch up with Kafka sees the admissions still in Kafka; within the session timeout (6 s).
const PAUSED_AFTER_LOSS: Duration =
    Duration::from_millis(testkit::world::MESSAGE_TIMEOUT_MS + 2_000);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    Empty,
    AofCrash,
    Snapshot,
    Failover,
}

/// What Redis falls back to at the loss.
enum Kept {
    Nothing,
    Synced(AofMark),
    Snapshot(Snapshot),
}

/// A world for `loss` with two ingress processes; for a failover, the gate's Redis behind a
/// proxy and a replica of it in sync.
async fn world_for(name: &'static str, loss: Loss) -> (World, Option<PrivateRedis>) {
    let services = Services {
        redis_proxy: loss == Loss::Failover,
        ..Services::default()
    };
    let mut world = World::start_on_services(name, Vec::new(), services).await;
    world.start_second_ingress().await;
    let replica = match loss {
        Loss::Failover => Some(PrivateRedis::replica_of(&world.redis).await),
        _ => None,
    };
    (world, replica)
}

/// Marks what Redis will fall back to: the AOF as last synced, a snapshot, or a replica cut off
/// from here on.
async fn keep(world: &World, loss: Loss, replica: Option<&PrivateRedis>) -> Kept {
    match loss {
        Loss::Empty => Kept::Nothing,
        Loss::AofCrash => Kept::Synced(world.redis.synced()),
        Loss::Snapshot => Kept::Snapshot(world.redis.snapshot().await),
        Loss::Failover => {
            replica.unwrap().pause_replication();
            Kept::Nothing
        }
    }
}

/// The loss itself; returns the consumer lag (events in Kafka the ledger has not taken) once
/// Redis is back, the consumer still paused.
async fn lose(world: &World, loss: Loss, kept: Kept, replica: Option<&PrivateRedis>) -> i64 {
    match (loss, kept) {
        (Loss::Empty, _) => world.redis.restart_empty().await,
        (Loss::AofCrash, Kept::Synced(mark)) => {
            let lost = world.redis.kill_and_restart(Some(mark)).await;
            println!("case {}: {lost} bytes of AOF lost", world.name);
        }
        (Loss::Snapshot, Kept::Snapshot(snapshot)) => world.redis.restore(&snapshot).await,
        (Loss::Failover, _) => {
            let replica = replica.unwrap();
            world.redis.stop();
            replica.promote().await;
            world.redis_proxy.as_ref().unwrap().repoint(replica.port);
        }
        (loss, _) => unreachable!("{loss:?} keeps nothing of this kind"),
    }
    world.fixture.topic_len(&world.fixture.topic).await - world.fixture.rows().await
}

/// Waits until one of the counters reached its share (`percent` of its total): the fastest
/// campaign leads, so none is over before the loss.
async fn at_share(progress: &[(&AtomicUsize, usize)], percent: usize) {
    testkit::eventually(Duration::from_secs(60), "burst progress", || async {
        let reached = progress
            .iter()
            .any(|(count, total)| count.load(Ordering::SeqCst) >= total * percent / 100);
        reached.then_some(())
    })
    .await;
}

/// The fault, mid-burst: keeps what Redis falls back to at 25 % of a campaign's requests,
/// pauses the consumer at 35 %, loses the rest at 50 %, and resumes the consumer
/// [`PAUSED_AFTER_LOSS`] later.
/// Returns the lag at the loss.
async fn fault(
    world: &World,
    loss: Loss,
    replica: Option<&PrivateRedis>,
    progress: &[(&AtomicUsize, usize)],
) -> i64 {
    at_share(progress, 25).await;
    let kept = keep(world, loss, replica).await;
    at_share(progress, 35).await;
    let consumer = world.consumer.as_ref().unwrap();
    consumer.signal("STOP");
    at_share(progress, 50).await;
    let lag = lose(world, loss, kept, replica).await;
    tokio::time::sleep(PAUSED_AFTER_LOSS).await;
    consumer.signal("CONT");
    lag
}

/// Users who hold `limit` coupons ask once more, through either ingress: each is refused (409).
/// Their answers join `rush`.
async fn holders_ask_again(world: &World, campaign: &str, rush: &mut Rush, limit: usize) {
    let mut held: HashMap<String, usize> = HashMap::new();
    for answer in rush.answers.iter().filter(|a| a.status == 202) {
        *held.entry(answer.user.clone()).or_default() += 1;
    }
    let full: Vec<String> = held
        .into_iter()
        .filter(|(_, n)| *n == limit)
        .map(|(user, _)| user)
        .collect();
    assert!(!full.is_empty(), "some users hold the limit");
    let again = world
        .rush(campaign, full, 1, CONCURRENCY, Arc::default())
        .await;
    let admitted: Vec<_> = again.answers.iter().filter(|a| a.status != 409).collect();
    assert!(
        admitted.is_empty(),
        "earlier holders not refused as holders (409): {admitted:?}"
    );
    rush.extend(again);
}

/// Cases (a) to (d): two campaigns of stock 300, limits 1 (400 users) and 3 (150 users), each
/// user asking four times, with `loss` mid-burst.
async fn loss_mid_burst(name: &'static str, loss: Loss) {
    let (world, replica) = world_for(name, loss).await;
    let one = world.open_campaign(300, 1).await;
    let three = world.open_campaign(300, 3).await;
    let (p1, p3) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let progress = [(&*p1, 400 * TIMES), (&*p3, 150 * TIMES)];
    let (mut rush1, mut rush3, lag) = tokio::join!(
        world.rush(&one, users("one", 0..400), TIMES, CONCURRENCY, p1.clone()),
        world.rush(
            &three,
            users("three", 0..150),
            TIMES,
            CONCURRENCY,
            p3.clone()
        ),
        fault(&world, loss, replica.as_ref(), &progress),
    );
    assert!(lag > 0, "events waited in Kafka at the loss");
    let mut all = Rush::default();
    for (campaign, rush, limit) in [(&one, &mut rush1, 1), (&three, &mut rush3, 3)] {
        holders_ask_again(&world, campaign, rush, limit).await;
        let report = world.check(campaign, &rush.answers).await;
        assert_eq!(report.coupons, 300, "the whole stock issued");
        println!(
            "case {name}, limit {limit}: 202 {}, issued {}, rejected {}, fence {}",
            rush.count(202),
            report.coupons,
            report.rejected,
            seconds(rush.fence())
        );
        all.extend(rush.clone());
    }
    assert!(
        all.fence().is_some(),
        "503 with Retry-After, then 202 again"
    );
    println!(
        "case {name}: consumer lag at the loss {lag}, fence {} (first 503 with Retry-After to the next 202)",
        seconds(all.fence())
    );
}

fn seconds(fence: Option<Duration>) -> String {
    fence.map_or("none".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restarted_empty_mid_burst_loses_no_202() {
    loss_mid_burst("loss-empty", Loss::Empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_crashed_with_aof_everysec_mid_burst_loses_no_202() {
    loss_mid_burst("loss-aof", Loss::AofCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restored_from_an_older_snapshot_mid_burst_loses_no_202() {
    loss_mid_burst("loss-snapshot", Loss::Snapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_promoted_while_behind_mid_burst_loses_no_202() {
    loss_mid_burst("loss-failover", Loss::Failover).await;
}

/// How long after its creation the campaign whose limit changes opens: its limit may change
/// only before the start.
const OPENS_IN: Duration = Duration::from_secs(5);

/// Case (e): a close, a stock increase (100 to 200) and a limit change (1 to 3, before the
/// start) made after the point Redis falls back to, while the consumer is paused; then `loss`
/// mid-burst. Each decision holds after the recovery.
async fn operator_changes_hold(name: &'static str, loss: Loss) {
    let (world, _) = world_for(name, loss).await;
    let closing = world.open_campaign(300, 1).await;
    let growing = world.open_campaign(100, 1).await;
    let (mut closed, mut grown) = tokio::join!(
        world.rush(&closing, users("c", 0..100), 2, CONCURRENCY, Arc::default()),
        world.rush(&growing, users("g", 0..150), 2, CONCURRENCY, Arc::default()),
    );
    assert_eq!(grown.count(202), 100, "sold out at the first stock");
    let now = OffsetDateTime::now_utc();
    let (opens, year) = (Instant::now() + OPENS_IN, Duration::from_secs(365 * 86_400));
    let limited = world
        .campaign_with_window(300, 1, now + OPENS_IN, now + year)
        .await;
    let kept = keep(&world, loss, None).await;
    world.consumer.as_ref().unwrap().signal("STOP");
    assert_eq!(world.close_campaign(&closing).await.status(), 200);
    let stock = json!({"total_stock": 200});
    assert_eq!(world.patch_campaign(&growing, &stock).await.status(), 200);
    let limit = json!({"per_user_limit": 3});
    assert_eq!(world.patch_campaign(&limited, &limit).await.status(), 200);
    // The grown stock admits again while Redis loses the changes; the closed campaign refuses.
    let progress = Arc::new(AtomicUsize::new(0));
    let (more, refused, lag) = tokio::join!(
        world.rush(
            &growing,
            users("g", 150..300),
            2,
            CONCURRENCY,
            progress.clone()
        ),
        world.rush(
            &closing,
            users("c", 100..150),
            2,
            CONCURRENCY,
            Arc::default()
        ),
        async {
            testkit::after(&progress, 40).await;
            let lag = lose(&world, loss, kept, None).await;
            tokio::time::sleep(PAUSED_AFTER_LOSS).await;
            world.consumer.as_ref().unwrap().signal("CONT");
            lag
        },
    );
    assert!(lag > 0, "events waited in Kafka at the loss");
    grown.extend(more);
    // After the recovery: the close holds for everyone, and the grown stock is sold out.
    let again = world
        .rush(&closing, users("c", 0..150), 1, CONCURRENCY, Arc::default())
        .await;
    let after_close: Vec<_> = (refused.answers.iter().chain(&again.answers))
        .filter(|a| a.status != 403)
        .collect();
    assert!(
        after_close.is_empty(),
        "the closed campaign: {after_close:?}"
    );
    closed.extend(refused);
    closed.extend(again);
    holders_ask_again(&world, &growing, &mut grown, 1).await;
    // The limit changed before the loss holds: three coupons each, the fourth request refused.
    tokio::time::sleep_until((opens + Duration::from_millis(200)).into()).await;
    let limited_rush = world
        .rush(
            &limited,
            users("l", 0..100),
            TIMES,
            CONCURRENCY,
            Arc::default(),
        )
        .await;
    assert_eq!(limited_rush.count(202), 300, "three each");
    assert_eq!(limited_rush.count(409), 100, "the fourth refused");
    let reports = [
        world.check(&closing, &closed.answers).await,
        world.check(&growing, &grown.answers).await,
        world.check(&limited, &limited_rush.answers).await,
    ];
    assert_eq!(reports[0].coupons, 100, "nobody admitted after the close");
    assert_eq!(reports[1].coupons, 200, "the grown stock, all of it");
    assert_eq!(reports[2].coupons, 300);
    let mut all = grown.clone();
    all.extend(closed);
    all.extend(limited_rush);
    println!(
        "case {name}: 202 {} (closed {}, grown {}, limited 300), issued {}, rejected {}, consumer lag at the loss {lag}, fence {}",
        all.count(202),
        reports[0].coupons,
        grown.count(202),
        reports.iter().map(|r| r.coupons).sum::<i64>(),
        reports.iter().map(|r| r.rejected).sum::<i64>(),
        seconds(all.fence())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_changes_hold_across_a_redis_restarted_empty() {
    operator_changes_hold("changes-empty", Loss::Empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_changes_hold_across_an_aof_everysec_crash() {
    operator_changes_hold("changes-aof", Loss::AofCrash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_changes_hold_across_a_snapshot_restore() {
    operator_changes_hold("changes-snapshot", Loss::Snapshot).await;
}

/// The harness's Redis faults do what production's do, on this machine's Redis: each leaves the
/// script cache empty (the gate's first `EVALSHA` answers NOSCRIPT) and a new `run_id` or
/// `master_replid`; the AOF crash, the restore and the failover lose exactly the writes after
/// their mark, and a process crash alone loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_redis_loss_empties_the_script_cache_and_renews_the_identity() {
    let redis = PrivateRedis::start().await;
    let load = || redis.call(&["SCRIPT", "LOAD", "return 1"]);
    let writes = |n: usize| {
        let redis = &redis;
        async move {
            for _ in 0..n {
                redis.call(&["INCR", "n"]).await;
            }
        }
    };
    let sha = load().await.unwrap();
    writes(5).await;
    let mut seen = redis.identity().await;
    println!("fresh: {seen:?}");
    let renewed = |before: &Identity, after: &Identity| {
        assert_ne!(before.run_id, after.run_id);
        assert_ne!(before.master_replid, after.master_replid);
    };

    redis.kill_and_restart(None).await;
    assert_eq!(
        redis.call(&["GET", "n"]).await.as_deref(),
        Some("5"),
        "a process crash loses nothing"
    );
    assert!(!redis.script_exists(&sha).await);
    let now = redis.identity().await;
    renewed(&seen, &now);
    println!("SIGKILL, restart from the AOF: script cached false, {now:?}");
    seen = now;

    load().await;
    let mark = redis.synced();
    writes(5).await;
    let lost = redis.kill_and_restart(Some(mark)).await;
    assert_eq!(
        redis.call(&["GET", "n"]).await.as_deref(),
        Some("5"),
        "the unsynced writes lost"
    );
    assert!(!redis.script_exists(&sha).await);
    let now = redis.identity().await;
    renewed(&seen, &now);
    println!("host crash, AOF cut by {lost} bytes: script cached false, {now:?}");
    seen = now;

    load().await;
    let snapshot = redis.snapshot().await;
    writes(5).await;
    redis.restore(&snapshot).await;
    assert_eq!(
        redis.call(&["GET", "n"]).await.as_deref(),
        Some("5"),
        "back to the snapshot"
    );
    assert!(!redis.script_exists(&sha).await);
    assert_eq!(redis.info("aof_enabled").await.as_deref(), Some("1"));
    let now = redis.identity().await;
    renewed(&seen, &now);
    println!("restore from a snapshot: script cached false, AOF on again, {now:?}");
    seen = now;

    load().await;
    redis.restart_empty().await;
    assert_eq!(redis.call(&["GET", "n"]).await, None);
    assert!(!redis.script_exists(&sha).await);
    let now = redis.identity().await;
    renewed(&seen, &now);
    println!("restart empty: script cached false, {now:?}");

    writes(5).await;
    load().await;
    let before = redis.identity().await;
    let replica = PrivateRedis::replica_of(&redis).await;
    let primary = redis.identity().await;
    println!(
        "a replica attached: the primary's master_replid {} ({:?})",
        if primary.master_replid == before.master_replid {
            "kept"
        } else {
            "renewed"
        },
        primary
    );
    assert_eq!(replica.call(&["GET", "n"]).await.as_deref(), Some("5"));
    assert!(
        !replica.script_exists(&sha).await,
        "SCRIPT LOAD does not replicate"
    );
    replica.pause_replication();
    writes(5).await;
    redis.stop();
    replica.promote().await;
    assert_eq!(
        replica.call(&["GET", "n"]).await.as_deref(),
        Some("5"),
        "behind by five"
    );
    assert!(!replica.script_exists(&sha).await);
    let promoted = replica.identity().await;
    renewed(&primary, &promoted);
    println!("replica promoted while behind: script cached false, {promoted:?}");
}
