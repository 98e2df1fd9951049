//! One test per injected fault. The figures each prints are quoted in docs/RELIABILITY.md.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use serde_json::Value;

use testkit::world::MESSAGE_TIMEOUT_MS;
use testkit::{World, after, users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_killed_mid_burst_loses_nothing() {
    let mut world = World::start("ingress-killed").await;
    let campaign = world.open_campaign(300, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let ingress = world.ingress.take().unwrap();
    let (mut answers, ()) = tokio::join!(
        world.burst(&campaign, users("k", 0..400), 32, progress.clone()),
        async {
            after(&progress, 120).await;
            ingress.kill();
        }
    );
    assert!(
        answers.iter().any(|a| a.status == 0),
        "the kill cut requests off"
    );
    world.start_ingress().await;
    let more = world
        .burst(&campaign, users("k", 400..700), 32, progress)
        .await;
    answers.extend(more);
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 300, "the whole stock ends up issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_past_the_message_timeout_rolls_forward() {
    let world = World::start("broker-paused").await;
    let campaign = world.open_campaign(500, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let (answers, ()) = tokio::join!(
        world.burst(&campaign, users("p", 0..300), 32, progress.clone()),
        async {
            after(&progress, 80).await;
            world.broker.proc.signal("STOP");
            // The fault itself: a broker silent for longer than the producer waits.
            tokio::time::sleep(Duration::from_millis(MESSAGE_TIMEOUT_MS + 1_500)).await;
            world.broker.proc.signal("CONT");
        }
    );
    let unavailable: Vec<&str> = answers
        .iter()
        .filter(|a| a.status == 503)
        .map(|a| a.user.as_str())
        .collect();
    assert!(!unavailable.is_empty(), "the pause produced 503s");
    world.check(&campaign, &answers).await;
    // Each 503 ended one way (SPEC 3): rolled forward (the ledger holds the user's coupon, and a
    // retry learns its issuance id with 409) or released (no coupon, and a retry is admitted
    // afresh). Which one depends on whether the broker may have received the event.
    let db = world.fixture.db().await;
    let campaign_id: uuid::Uuid = campaign.parse().unwrap();
    let mut rolled_forward = 0;
    let mut retried = answers.clone();
    for user in unavailable {
        let held: Option<uuid::Uuid> = db
            .query_opt(
                "SELECT id FROM coupons WHERE campaign_id = $1 AND user_id = $2",
                &[&campaign_id, &user],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        let retry = world.request(&campaign, user).await;
        let status = retry.status().as_u16();
        let body: Value = retry.json().await.unwrap();
        let id = body["issuance_id"].as_str().unwrap().to_owned();
        match held {
            Some(coupon) => {
                assert_eq!(status, 409, "{user} holds a rolled-forward coupon");
                let issuance: schema::ids::IssuanceId = id.parse().unwrap();
                assert_eq!(issuance.reservation, coupon, "the same issuance id");
                let read: Value = world.status(&id, user).await.json().await.unwrap();
                assert_eq!(read["status"], "issued");
                rolled_forward += 1;
            }
            None => {
                assert_eq!(status, 202, "{user}'s reservation was released");
                retried.push(testkit::Answer {
                    user: user.to_owned(),
                    status,
                    issuance_id: Some(id),
                    elapsed: Duration::ZERO,
                });
            }
        }
    }
    assert!(
        rolled_forward > 0,
        "the pause rolled some reservation forward"
    );
    world.check(&campaign, &retried).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_script_flush_mid_burst_causes_no_error() {
    let world = World::start("script-flush").await;
    let campaign = world.open_campaign(200, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let port = world.redis.port.to_string();
    let (answers, ()) = tokio::join!(
        world.burst(&campaign, users("f", 0..400), 32, progress.clone()),
        async {
            for at in [50, 150, 250] {
                after(&progress, at).await;
                let flushed = std::process::Command::new("redis-cli")
                    .args(["-p", &port, "SCRIPT", "FLUSH"])
                    .status()
                    .unwrap();
                assert!(flushed.success());
            }
        }
    );
    assert!(
        answers.iter().all(|a| matches!(a.status, 202 | 410)),
        "only 202 and 410"
    );
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 200);
}

/// Redis restarted empty while a wave's events wait in Kafka (the consumer is down): the gate
/// fences, re-seeds from the ledger once it has caught up with them, and admits nobody twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_never_oversells() {
    let mut world = World::start("redis-restarted").await;
    let campaign = world.open_campaign(250, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut answers = world
        .burst(&campaign, users("r", 0..150), 32, progress.clone())
        .await;
    world
        .fixture
        .wait_for_rows(150, "the first wave persisted")
        .await;
    // A second wave whose events are still in Kafka (the consumer is down) when Redis loses
    // everything.
    world.consumer.take().unwrap().kill();
    answers.extend(
        world
            .burst(&campaign, users("r", 150..200), 32, progress.clone())
            .await,
    );
    let admitted: HashSet<String> = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| a.user.clone())
        .collect();
    world.redis.restart_empty().await;
    // Everyone again, old holders included, then newcomers, retrying through the fence; the
    // consumer comes back a second into it.
    let (second, consumer) = tokio::join!(
        world.rush(&campaign, users("r", 0..400), 1, 32, progress),
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            world.spawn_consumer("consumer")
        }
    );
    world.consumer = Some(consumer);
    for answer in &second.answers {
        if admitted.contains(&answer.user) {
            assert_eq!(answer.status, 409, "{} was admitted before", answer.user);
        }
    }
    answers.extend(second.answers.iter().cloned());
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 250, "the whole stock, once each");
    assert_eq!(report.rejected, 0, "nobody was admitted twice");
    let view = world.admin_campaign(&campaign).await;
    assert_eq!(view["rejected"], 0, "{view}");
    println!(
        "case redis-restarted: 202 {}, issued {}, rejected {}, fence {:?}",
        answers.iter().filter(|a| a.status == 202).count(),
        report.coupons,
        report.rejected,
        second.fence()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_mid_drain_leaves_no_duplicate() {
    let mut world = World::start("consumer-killed").await;
    let campaign = world.open_campaign(600, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let consumer = world.consumer.take().unwrap();
    let (answers, ()) = tokio::join!(
        world.burst(&campaign, users("c", 0..600), 32, progress.clone()),
        async {
            after(&progress, 300).await;
            consumer.kill();
        }
    );
    world.start_consumer();
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load_backs_off_and_drains() {
    let world = World::start("database-outage").await;
    let campaign = world.open_campaign(1_500, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let (answers, ()) = tokio::join!(
        world.burst(&campaign, users("d", 0..1_500), 32, progress.clone()),
        async {
            // Once the consumer is writing, take the ledger away from it for a while.
            world.fixture.wait_for_rows(1, "the consumer writing").await;
            world.database_proxy.fail();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let during = world.fixture.rows().await;
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            assert_eq!(
                world.fixture.rows().await,
                during,
                "nothing is written while the ledger is away"
            );
            world.database_proxy.restore();
        }
    );
    assert!(
        answers.iter().all(|a| a.status == 202),
        "the ledger is off the issuance path"
    );
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 1_500);
}

/// A second member joins mid-burst (rebalance), then the first is frozen past the poll interval
/// (it is a zombie when it wakes): the group keeps going and no row is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_and_a_frozen_consumer_write_no_duplicate() {
    let world = World::start("rebalance-zombie").await;
    let campaign = world.open_campaign(1_200, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let (answers, _second) = tokio::join!(
        world.burst(&campaign, users("z", 0..1_200), 16, progress.clone()),
        async {
            world.fixture.wait_for_rows(1, "the consumer writing").await;
            let second = world.spawn_consumer("consumer-2");
            after(&progress, 600).await;
            let first = world.consumer.as_ref().unwrap();
            first.signal("STOP");
            // Past max.poll.interval.ms (6 s here): the group moves on without it.
            tokio::time::sleep(Duration::from_secs(8)).await;
            first.signal("CONT");
            second
        }
    );
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 1_200);
}

/// Redis gone at admission: every request answers 503 at once and nothing reaches Kafka without
/// the gate's check. Redis comes back from its AOF as a new server; the gate fences and
/// re-seeds from the ledger before it admits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_at_admission_answers_503_and_produces_nothing() {
    let world = World::start("redis-stopped").await;
    let campaign = world.open_campaign(400, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut answers = world
        .burst(&campaign, users("s", 0..100), 16, progress.clone())
        .await;
    let before = world.fixture.topic_len(&world.fixture.topic).await;
    world.redis.stop();
    let refused = world
        .burst(&campaign, users("s", 100..200), 16, progress.clone())
        .await;
    assert!(
        refused.iter().all(|a| a.status == 503),
        "no admission without the gate"
    );
    assert_eq!(
        world.fixture.topic_len(&world.fixture.topic).await,
        before,
        "nothing produced"
    );
    world.redis.start_again().await;
    answers.extend(refused);
    let after_restart = testkit::eventually(Duration::from_secs(30), "admissions again", || {
        let (api, campaign) = (&world.api, &campaign);
        let progress = progress.clone();
        async move {
            let again = api.burst(campaign, users("s", 200..201), 1, progress).await;
            (again[0].status == 202).then_some(again)
        }
    })
    .await;
    answers.extend(after_restart);
    answers.extend(
        world
            .burst(&campaign, users("s", 201..300), 16, progress)
            .await,
    );
    world.check(&campaign, &answers).await;
}

/// The broker gone at admission: requests answer 503 once Kafka cannot confirm in time. Their
/// reservations are kept and re-produced by the sweeper when a broker is back, unless the
/// producer reports the event never left it (then released); the gate's reserved count ends
/// equal to the ledger's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_at_admission_answers_503_and_settles_when_back() {
    let mut world = World::start("broker-stopped").await;
    let campaign = world.open_campaign(400, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut answers = world
        .burst(&campaign, users("b", 0..100), 16, progress.clone())
        .await;
    // The local broker keeps nothing across a restart, so let the ledger take what was
    // acknowledged first; a durable Kafka keeps it by itself.
    world
        .fixture
        .wait_for_rows(100, "the first wave persisted")
        .await;
    world.broker.kill();
    let refused = world
        .burst(&campaign, users("b", 100..150), 16, progress.clone())
        .await;
    let statuses: Vec<(u16, u128)> = refused
        .iter()
        .map(|a| (a.status, a.elapsed.as_millis()))
        .collect();
    eprintln!("answers without a broker (status, ms): {statuses:?}");
    let statuses: Vec<u16> = refused.iter().map(|a| a.status).collect();
    assert!(
        !statuses.contains(&202),
        "no 202 without Kafka: {statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 503).count() > 40,
        "{statuses:?}"
    );
    answers.extend(refused);
    // The operator view still answers, without the lag Kafka cannot give.
    let started = Instant::now();
    let view = world.admin_campaign(&campaign).await;
    assert_eq!(view["consumer_lag"], Value::Null, "{view}");
    eprintln!("operator view without a broker in {:?}", started.elapsed());
    world.broker.start_again().await;
    world.fixture.create_topics(3).await;
    answers.extend(
        world
            .burst(&campaign, users("b", 150..250), 16, progress)
            .await,
    );
    let report = world.check(&campaign, &answers).await;
    // Each 503'd reservation was completed (its event may have reached the broker), or released
    // because librdkafka reported it never left the producer (`NOT_PERSISTED`); none was lost.
    let view = world.admin_campaign(&campaign).await;
    let released = view["released"].as_i64().unwrap();
    assert_eq!(report.coupons + released, 250, "{view}");
}
