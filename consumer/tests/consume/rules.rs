//! The ledger enforces a campaign's rules itself, whatever the gate admitted: the per-user
//! limit (held coupons, the slot, the seq), the window and the operator's close. Each refusal is
//! recorded in `issuance_rejections` with its reason and counted by reason; and a planned row
//! the database does not write fails the whole batch instead of vanishing.

use consumer::persist::decode::Issuance;
use consumer::persist::store::{Ledger, StoreError};
use schema::time::from_unix_ms;
use testkit::Fixture;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Running, event};

/// A campaign's rules as the operator set them, in Unix milliseconds.
struct Rules {
    stock: i32,
    per_user_limit: i32,
    starts_ms: i64,
    ends_ms: i64,
    closed_ms: Option<i64>,
}

/// Now, in whole seconds' milliseconds: a base for instants exact to the millisecond.
fn now_ms() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() * 1000
}

impl Rules {
    /// Open from an hour ago for two hours, not closed.
    fn open(stock: i32, per_user_limit: i32) -> Rules {
        Rules {
            stock,
            per_user_limit,
            starts_ms: now_ms() - 3_600_000,
            ends_ms: now_ms() + 3_600_000,
            closed_ms: None,
        }
    }
}

/// Inserts a campaign with these rules straight into the ledger.
async fn campaign(running: &Running, rules: &Rules) -> Uuid {
    let id = Uuid::now_v7();
    let at = |ms: i64| from_unix_ms(ms).unwrap();
    running
        .fixture
        .db()
        .await
        .execute(
            "INSERT INTO campaigns (id, name, total_stock, per_user_limit, starts_at, ends_at,
                                    closed_at, discount_kind, discount_value, coupon_valid_days)
             VALUES ($1, 'rules', $2, $3, $4, $5, $6, 'fixed', 100, 7)",
            &[
                &id,
                &rules.stock,
                &rules.per_user_limit,
                &at(rules.starts_ms),
                &at(rules.ends_ms),
                &rules.closed_ms.map(at),
            ],
        )
        .await
        .unwrap();
    id
}

/// Each user's rejection reasons, by user.
async fn rejections(running: &Running) -> Vec<(String, String)> {
    running
        .fixture
        .db()
        .await
        .query(
            "SELECT user_id, reason FROM issuance_rejections ORDER BY user_id, seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn rejected(running: &Running, reason: &str) -> f64 {
    running.metric(&format!(
        "coupon_issuances_rejected_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_enforces_the_per_user_limit_itself() {
    let running = Running::start().await;
    // Limit 1: a coupon at seq 1, then an event at seq 2 (a gate running on a stale limit).
    let one = campaign(&running, &Rules::open(10, 1)).await;
    running.produce_event(&event(one, "alice", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'alice'", 1)
        .await;
    running.produce_event(&event(one, "alice", 2)).await;
    // Limit 3: seq 1 to 4.
    let three = campaign(&running, &Rules::open(10, 3)).await;
    for seq in 1..=4 {
        running.produce_event(&event(three, "bob", seq)).await;
    }
    running
        .wait_for("SELECT count(*) FROM issuance_rejections", 2)
        .await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'bob'", 3)
        .await;

    assert_eq!(
        running
            .count("SELECT count(*) FROM coupons WHERE user_id = 'alice'")
            .await,
        1
    );
    assert_eq!(
        running
            .count("SELECT max(seq)::bigint FROM coupons WHERE user_id = 'bob'")
            .await,
        3
    );
    assert_eq!(
        rejections(&running).await,
        [
            ("alice".to_owned(), "per-user-limit".to_owned()),
            ("bob".to_owned(), "per-user-limit".to_owned()),
        ]
    );
    assert_eq!(
        running
            .count("SELECT sum(issued_count)::bigint FROM campaigns")
            .await,
        4
    );
    assert_eq!(rejected(&running, "per-user-limit"), 2.0);
    assert_eq!(rejected(&running, "stock-exhausted"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_events_outside_the_window_or_after_the_close() {
    let running = Running::start().await;
    let closed_ms = now_ms() - 60_000;
    let closed = campaign(
        &running,
        &Rules {
            closed_ms: Some(closed_ms),
            ..Rules::open(10, 1)
        },
    )
    .await;
    let window = Rules::open(10, 1);
    let (starts_ms, ends_ms) = (window.starts_ms, window.ends_ms);
    let windowed = campaign(&running, &window).await;
    let at = |campaign: Uuid, user: &str, ms: i64| {
        let mut e = event(campaign, user, 1);
        e.requested_at_ms = ms;
        e
    };
    for e in [
        at(closed, "c1-just-before-close", closed_ms - 1),
        at(closed, "c2-at-close", closed_ms),
        at(closed, "c3-after-close", closed_ms + 1_000),
        at(windowed, "w1-before-start", starts_ms - 1),
        at(windowed, "w2-at-start", starts_ms),
        at(windowed, "w3-just-before-end", ends_ms - 1),
        at(windowed, "w4-at-end", ends_ms),
    ] {
        running.produce_event(&e).await;
    }
    running
        .wait_for("SELECT count(*) FROM issuance_rejections", 4)
        .await;
    running.wait_for("SELECT count(*) FROM coupons", 3).await;

    let coupons: Vec<String> = running
        .fixture
        .db()
        .await
        .query("SELECT user_id FROM coupons ORDER BY user_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        coupons,
        ["c1-just-before-close", "w2-at-start", "w3-just-before-end"]
    );
    let refused = rejections(&running).await;
    let expected = [
        ("c2-at-close", "campaign-closed"),
        ("c3-after-close", "campaign-closed"),
        ("w1-before-start", "outside-window"),
        ("w4-at-end", "outside-window"),
    ];
    assert_eq!(
        refused,
        expected.map(|(user, reason)| (user.to_owned(), reason.to_owned()))
    );
    assert_eq!(rejected(&running, "campaign-closed"), 2.0);
    assert_eq!(rejected(&running, "outside-window"), 2.0);
}

/// A planned coupon the database skips (here a unique index the plan knows nothing of, as a
/// future schema change could add) fails the batch: nothing of it is written, the error counts
/// as an integrity violation, and a batch without the conflict goes in whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_row_the_database_skips_rolls_the_batch_back() {
    let fixture = Fixture::new(1).await;
    let db = fixture.db().await;
    let campaign = Uuid::now_v7();
    db.execute(
        "INSERT INTO campaigns (id, name, total_stock, starts_at, ends_at, discount_kind,
                                discount_value, coupon_valid_days)
         VALUES ($1, 'guarded', 10, now() - interval '1 hour', now() + interval '1 hour',
                 'fixed', 1, 1)",
        &[&campaign],
    )
    .await
    .unwrap();
    db.batch_execute(
        "CREATE UNIQUE INDEX coupons_one_per_instant ON coupons (campaign_id, requested_at)",
    )
    .await
    .unwrap();
    let config: tokio_postgres::Config = fixture.database_url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let ledger = Ledger::new(deadpool_postgres::Pool::builder(manager).build().unwrap());
    let requested_at = from_unix_ms(now_ms()).unwrap();
    let issuance = |user: &str, at: OffsetDateTime| Issuance {
        id: Uuid::now_v7(),
        campaign,
        user: user.to_owned(),
        seq: 1,
        requested_at: at,
        traceparent: None,
    };
    let clashing = [
        issuance("first", requested_at),
        issuance("second", requested_at),
        issuance("third", requested_at + time::Duration::milliseconds(1)),
    ];

    let error = ledger.write(&clashing).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Unplanned {
                planned: 3,
                written: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_integrity_violation());
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM coupons").await, 0);
    assert_eq!(count("SELECT count(*) FROM outbox").await, 0);
    assert_eq!(count("SELECT issued_count::bigint FROM campaigns").await, 0);

    let apart = [
        issuance("first", requested_at),
        issuance("second", requested_at + time::Duration::milliseconds(2)),
    ];
    let written = ledger.write(&apart).await.unwrap();
    assert_eq!(written.inserted, 2);
    assert_eq!(count("SELECT count(*) FROM coupons").await, 2);
}

/// A coupon's code (migration V12): 32 lowercase hex digits, the millisecond it was written
/// followed by 80 random bits, so the UNIQUE index on it takes new codes at its right edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_codes_lead_with_their_time_and_end_random() {
    let running = Running::start().await;
    let open = campaign(&running, &Rules::open(10, 1)).await;
    running.produce_event(&event(open, "first", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'first'", 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    running.produce_event(&event(open, "second", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'second'", 1)
        .await;

    let db = running.fixture.db().await;
    let rows = db
        .query(
            "SELECT code, floor(extract(epoch FROM issued_at) * 1000)::int8 FROM coupons
             ORDER BY issued_at",
            &[],
        )
        .await
        .unwrap();
    let codes: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (code, issued_ms) in &codes {
        assert!(
            code.len() == 32 && code.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{code}"
        );
        let written_ms = i64::from_str_radix(&code[..12], 16).unwrap();
        // issued_at is the batch transaction's start; the code is written inside it.
        assert!(
            (*issued_ms..issued_ms + 10_000).contains(&written_ms),
            "{code} against {issued_ms}"
        );
    }
    assert!(
        codes[0].0 < codes[1].0,
        "a later coupon's code sorts after: {codes:?}"
    );

    // Many codes of one millisecond: the random tails tell them apart, and nothing repeats.
    let tails = db
        .query_one(
            "SELECT count(DISTINCT right(c, 20)), count(DISTINCT c), count(DISTINCT left(c, 12)),
                    bool_and(c ~ '^[0-9a-f]{32}$')
             FROM (SELECT coupon_code() AS c FROM generate_series(1, 20000)) s",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(tails.get::<_, i64>(0), 20_000);
    assert_eq!(tails.get::<_, i64>(1), 20_000);
    assert!(tails.get::<_, i64>(2) < 20_000, "codes share a millisecond");
    assert!(tails.get::<_, bool>(3));
}
