//! Loss detection and re-seeding (`gate::recovery`) on a real Redis, a fixture's ledger and the
//! shared broker: a changed server identity or vanished state fences a campaign, a fenced
//! campaign admits, releases and rolls forward nothing, and the re-seed restores holders and
//! stock from the caught-up ledger, settles the old journal and lifts the fence exactly once.

use std::sync::Arc;
use std::time::Duration;

use gate::ledger::Settings;
use gate::recovery::{GroupLog, Step};
use gate::{Gate, Reservation, Seed};
use rdkafka::consumer::BaseConsumer;
use schema::ids::{CampaignId, IssuanceId, UserId};
use time::OffsetDateTime;

/// A campaign in the fixture's ledger (limit 2, stock 10, open for an hour) and in the gate.
async fn campaign(fixture: &testkit::Fixture, gate: &Gate) -> Settings {
    let id = CampaignId(uuid::Uuid::now_v7());
    let now = OffsetDateTime::now_utc();
    let (starts, ends) = (
        now - time::Duration::minutes(1),
        now + time::Duration::hours(1),
    );
    fixture
        .db()
        .await
        .execute(
            "INSERT INTO campaigns (id, name, total_stock, per_user_limit, starts_at, ends_at,
                                    discount_kind, discount_value, coupon_valid_days)
             VALUES ($1, 'loss', 10, 2, $2, $3, 'fixed', 100, 30)",
            &[&id.0, &starts, &ends],
        )
        .await
        .unwrap();
    let settings = gate::ledger::settings(&fixture.db().await, &id)
        .await
        .unwrap()
        .unwrap();
    gate.seed(
        &id,
        Seed {
            total_stock: settings.total_stock,
            per_user_limit: settings.per_user_limit,
            starts_ms: settings.starts_ms,
            ends_ms: settings.ends_ms,
        },
    )
    .await
    .unwrap();
    settings
}

async fn gate_on(url: String, prefix: &str, deadline: Duration) -> Gate {
    let endpoint = gate::Endpoint {
        url,
        ..gate::Endpoint::default()
    };
    let gate = Gate::connect(&endpoint, prefix, Duration::from_secs(2), deadline)
        .await
        .unwrap();
    gate.secure(&[], 0).await.unwrap();
    gate
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

async fn reserve(gate: &Gate, campaign: &CampaignId, name: &str) -> (Reservation, IssuanceId) {
    let issuance = IssuanceId::new(*campaign);
    let got = gate
        .reserve(campaign, &user(name), &issuance.reservation)
        .await
        .unwrap();
    (got, issuance)
}

/// Records a coupon in the ledger as the consumer would have.
async fn persist(db: &tokio_postgres::Client, issuance: &IssuanceId, name: &str, seq: i32) {
    db.execute(
        "WITH c AS (INSERT INTO coupons (id, campaign_id, user_id, seq, requested_at, expires_at)
                    VALUES ($1, $2, $3, $4, now(), now() + interval '1 day'))
         UPDATE campaigns SET issued_count = issued_count + 1 WHERE id = $2",
        &[&issuance.reservation, &issuance.campaign.0, &name, &seq],
    )
    .await
    .unwrap();
}

fn group_log(fixture: &testkit::Fixture) -> GroupLog {
    let reader: BaseConsumer = fixture
        .kafka
        .reader("gate-loss-test", &fixture.group)
        .create()
        .unwrap();
    GroupLog::new(Arc::new(reader), &fixture.topic)
}

/// State built under another server identity (what a restart from AOF, a restored snapshot or
/// a promoted replica look like to a campaign) is fenced; the re-seed rebuilds it from the
/// ledger once the in-flight window passed and the group caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_history_fences_until_reseeded_from_the_caught_up_ledger() {
    let fixture = testkit::Fixture::new(1).await;
    let deadline = Duration::from_millis(300);
    let gate = gate_on(testkit::redis_url(), &fixture.redis_prefix, deadline).await;
    let db = fixture.db().await;
    let settings = campaign(&fixture, &gate).await;
    let id = settings.id;
    // Before the loss: a holds two coupons (persisted), b one (persisted), c one whose event
    // never reached Kafka (journaled only).
    let mut admitted = Vec::new();
    for name in ["a", "a", "b", "c"] {
        let (got, issuance) = reserve(&gate, &id, name).await;
        assert!(matches!(got, Reservation::Accepted { .. }), "{got:?}");
        admitted.push((name, issuance));
    }
    for (name, issuance, seq) in [("a", 0, 1), ("a", 1, 2), ("b", 2, 1)] {
        persist(&db, &admitted[issuance].1, name, seq).await;
    }
    // The state now looks as if built on another server.
    let mut redis = fixture.redis().await;
    let meta = format!("{}{{c:{id}}}:meta", fixture.redis_prefix);
    let _: () = redis::cmd("HSET")
        .arg(&meta)
        .arg("rid")
        .arg("an-older-server")
        .query_async(&mut redis)
        .await
        .unwrap();

    let fenced = gate
        .secure(std::slice::from_ref(&settings), 0)
        .await
        .unwrap();
    assert_eq!(fenced.len(), 1, "the campaign is fenced");
    let fence = fenced[0].clone();
    assert_eq!(reserve(&gate, &id, "d").await.0, Reservation::Fenced);
    assert!(
        !gate
            .release(&admitted[3].1, 1, "kafka-refused")
            .await
            .unwrap()
    );
    assert!(
        gate.claim_overdue(&id, Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Checking again keeps the same fence.
    let again = gate.check(&settings, false).await.unwrap().unwrap();
    assert_eq!(again.value, fence.value);

    let log = group_log(&fixture);
    let (mut mine, mut other) = (None, None);
    let first = gate::recovery::step(&gate, &db, &log, &fence, &mut mine)
        .await
        .unwrap();
    assert_eq!(first, Step::InFlight, "events may still be on their way");
    assert_eq!(
        gate::recovery::step(&gate, &db, &log, &fence, &mut other)
            .await
            .unwrap(),
        Step::Elsewhere,
        "one pod recovers at a time"
    );
    let started = std::time::Instant::now();
    let reseeded = loop {
        match gate::recovery::step(&gate, &db, &log, &fence, &mut mine)
            .await
            .unwrap()
        {
            Step::Reseeded {
                generation,
                fenced_ms,
            } => break (generation, fenced_ms),
            step => assert!(started.elapsed() < Duration::from_secs(20), "{step:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reseeded.0, 2, "a new seed generation");
    assert!(
        reseeded.1 >= 300,
        "fenced at least the in-flight window: {reseeded:?}"
    );
    assert!(!gate.fenced(&id).await.unwrap());

    // The gate now says what the ledger says.
    let figures = gate.figures(&id).await.unwrap().unwrap();
    assert_eq!((figures.remaining, figures.accepted), (7, 3));
    assert!(matches!(
        reserve(&gate, &id, "a").await.0,
        Reservation::Duplicate { .. }
    ));
    match reserve(&gate, &id, "b").await.0 {
        Reservation::Accepted {
            seq, generation, ..
        } => assert_eq!((seq, generation), (2, 2)),
        other => panic!("b holds one of two: {other:?}"),
    }
    // c's reservation never reached the ledger: released, with the reason.
    match gate.admission(&admitted[3].1).await.unwrap() {
        Some(gate::Admission::Released { reason, user }) => {
            assert_eq!((reason.as_str(), user.as_str()), ("gate-recovered", "c"));
        }
        other => panic!("c's reservation: {other:?}"),
    }
    // A late pod's step for the lifted fence changes nothing.
    assert_eq!(
        gate::recovery::step(&gate, &db, &log, &fence, &mut other)
            .await
            .unwrap(),
        Step::Elsewhere
    );
    let after = gate.figures(&id).await.unwrap().unwrap();
    assert_eq!(after.remaining, 6);
}

/// State that vanished while the server kept its identity (a flush, an eviction) is fenced by
/// the timer's check, and the scripts the check loads admit nobody for it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_state_is_fenced_and_reported() {
    let fixture = testkit::Fixture::new(1).await;
    let gate = gate_on(
        testkit::redis_url(),
        &fixture.redis_prefix,
        Duration::from_secs(7),
    )
    .await;
    let settings = campaign(&fixture, &gate).await;
    let id = settings.id;
    assert!(matches!(
        reserve(&gate, &id, "a").await.0,
        Reservation::Accepted { .. }
    ));
    assert!(
        gate.check(&settings, false).await.unwrap().is_none(),
        "nothing lost yet"
    );
    let mut redis = fixture.redis().await;
    let meta = format!("{}{{c:{id}}}:meta", fixture.redis_prefix);
    let _: () = redis::cmd("DEL")
        .arg(&meta)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        reserve(&gate, &id, "b").await.0,
        Reservation::UnknownCampaign
    );
    assert!(gate.check(&settings, false).await.unwrap().is_some());
    assert_eq!(reserve(&gate, &id, "b").await.0, Reservation::Fenced);
    let report = gate::reconcile::report(&fixture.db().await, &gate, &id)
        .await
        .unwrap();
    assert!(report.fenced);
    assert!(
        report
            .quiet_breaches()
            .iter()
            .any(|b| b.starts_with("fenced"))
    );
}

/// A restarted server has no scripts: admission calls answer `ScriptsMissing` instead of
/// reloading, and the check fences the campaign the server lost before loading them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_noticed_before_anyone_is_admitted() {
    let fixture = testkit::Fixture::new(1).await;
    let redis = testkit::PrivateRedis::start().await;
    let gate = gate_on(redis.url(), &fixture.redis_prefix, Duration::from_secs(7)).await;
    let settings = campaign(&fixture, &gate).await;
    assert!(matches!(
        reserve(&gate, &settings.id, "a").await.0,
        Reservation::Accepted { .. }
    ));
    redis.restart_empty().await;
    let refused = testkit::eventually(Duration::from_secs(10), "the restarted server", || async {
        let issuance = IssuanceId::new(settings.id);
        match gate
            .reserve(&settings.id, &user("b"), &issuance.reservation)
            .await
        {
            Err(gate::GateError::ScriptsMissing) => Some(()),
            _ => None,
        }
    })
    .await;
    let () = refused;
    // The timer's check fences the campaign but loads no script: still nothing admits.
    let timer = gate
        .check_all(std::slice::from_ref(&settings), 0)
        .await
        .unwrap();
    assert_eq!(timer.len(), 1);
    let issuance = IssuanceId::new(settings.id);
    let refused = gate
        .reserve(&settings.id, &user("b"), &issuance.reservation)
        .await;
    assert!(
        matches!(refused, Err(gate::GateError::ScriptsMissing)),
        "{refused:?}"
    );
    let fenced = gate
        .secure(std::slice::from_ref(&settings), 0)
        .await
        .unwrap();
    assert_eq!(fenced.len(), 1);
    assert_eq!(
        reserve(&gate, &settings.id, "b").await.0,
        Reservation::Fenced
    );
}
