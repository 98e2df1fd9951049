//! Availability: concurrent operators never freeze the service (no request holds one pooled
//! PostgreSQL connection while waiting for another), a flood of public reads of random
//! campaign ids leaves issuance and operators working, an id read as unknown becomes visible
//! once the campaign exists, and the ledger's data errors are the caller's (400), not 503.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::Stack;

async fn patch(stack: &Stack, campaign: &str, body: Value) -> reqwest::Response {
    stack.patch_campaign(campaign, &body).await
}

/// Longer than any answer may take: a hang detector, not a performance bound.
const HANG: Duration = Duration::from_secs(180);

fn campaign_body(n: usize, starts_at: OffsetDateTime) -> Value {
    json!({
        "name": format!("concurrent {n}"),
        "total_stock": 10,
        "per_user_limit": 1,
        "starts_at": starts_at.format(&Rfc3339).unwrap(),
        "ends_at": (starts_at + Duration::from_secs(7200)).format(&Rfc3339).unwrap(),
        "discount": {"kind": "percent", "value": 10},
        "coupon_valid_days": 30,
    })
}

/// 96 concurrent creates, then 144 concurrent changes, list reads and closes, on a pool of four
/// connections: every one gets its proper answer, none a 503. (With a request holding one
/// connection while it waits for a second, four such requests take the whole pool and wait for
/// each other until the pool's wait ends, and everything behind them answers 503.) The pool's
/// wait is generous here so that only such a wait, not a slow shared machine, can make a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operators_get_their_answers_and_never_a_503() {
    let stack = Stack::ingress_with(&["--database-pool-wait-ms=10000"]).await;
    assert_eq!(stack.app.config.database_pool_size, 4);
    let now = OffsetDateTime::now_utc();
    let run = async {
        let mut created: Vec<(usize, u16, Value)> = futures_util::stream::iter(0..96)
            .map(|n| {
                let stack = &stack;
                // Half open now, half scheduled an hour ahead.
                let starts = if n % 2 == 0 {
                    now - Duration::from_secs(60)
                } else {
                    now + Duration::from_secs(3600)
                };
                async move {
                    let response = stack
                        .admin_post("/v1/admin/campaigns", &campaign_body(n, starts))
                        .await;
                    let status = response.status().as_u16();
                    (n, status, response.json().await.unwrap_or(Value::Null))
                }
            })
            .buffer_unordered(96)
            .collect()
            .await;
        // In the order of `n`: even ones are open, odd ones scheduled.
        created.sort_by_key(|(n, _, _)| *n);
        let ids: Vec<String> = created
            .iter()
            .map(|(_, status, body)| {
                assert_eq!(*status, 201, "{body}");
                body["id"].as_str().unwrap().to_owned()
            })
            .collect();

        let answers: Vec<(usize, u16, String)> = futures_util::stream::iter(0..144)
            .map(|n| {
                let stack = &stack;
                let id = &ids[n % ids.len()];
                async move {
                    let response = match n % 4 {
                        0 => patch(stack, id, json!({"total_stock": 10 + n})).await,
                        1 => patch(stack, id, json!({"per_user_limit": 2})).await,
                        2 => stack.close_campaign(id).await,
                        _ => admin_get(stack, "/v1/admin/campaigns?limit=50").await,
                    };
                    let status = response.status().as_u16();
                    (n, status, response.text().await.unwrap_or_default())
                }
            })
            .buffer_unordered(144)
            .collect()
            .await;
        (ids, answers)
    };
    let (ids, answers) = tokio::time::timeout(HANG, run)
        .await
        .expect("every operator request is answered");

    for (n, status, body) in &answers {
        let allowed: &[u16] = match n % 4 {
            // A change races a close of the same campaign: 200 before it, 409 after.
            0 => &[200, 409],
            // The per-user limit changes only before the start: open campaigns refuse it.
            1 if (n % ids.len()) % 2 == 0 => &[409],
            1 => &[200, 409],
            _ => &[200],
        };
        assert!(
            allowed.contains(status),
            "request {n} answered {status}: {body}"
        );
    }
    // Ledger and gate agree on every campaign's stock after the concurrent changes.
    for id in &ids {
        let view = stack.admin_campaign(id).await;
        assert_eq!(view["remaining"], view["total_stock"], "{view}");
    }
}

async fn admin_get(stack: &Stack, path: &str) -> reqwest::Response {
    stack
        .http
        .get(format!("{}{path}", stack.base))
        .bearer_auth(stack.admin_token())
        .send()
        .await
        .unwrap()
}

/// With every pooled connection taken, an operator request waits at most
/// `DATABASE_POOL_WAIT_MS` for one and then answers 503 with `Retry-After`, naming the busy
/// pool (not the request deadline, which is far away here); once a connection is free again,
/// the same request answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_answers_503_with_retry_after_instead_of_waiting() {
    let stack = Stack::ingress_with(&[
        "--database-pool-size=1",
        "--database-pool-wait-ms=200",
        "--request-timeout-ms=120000",
    ])
    .await;
    let campaign = stack.open_campaign(5, 1).await;
    let held = stack.app.db.get().await.unwrap();
    let path = format!("/v1/admin/campaigns/{campaign}");
    let busy = tokio::time::timeout(HANG, admin_get(&stack, &path))
        .await
        .expect("answered without waiting for the request deadline");
    assert_eq!(busy.status(), 503);
    assert!(busy.headers().contains_key("retry-after"));
    let problem: Value = busy.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "every database connection is busy; retry"
    );
    drop(held);
    assert_eq!(admin_get(&stack, &path).await.status(), 200);
}

/// Random-id public reads in a flood, with a small in-flight limit and a small public budget:
/// issuance still answers 202 to every user, and an operator still reads a campaign, because
/// the reads neither take issuance's permits nor more than their share of the ledger's pool.
/// The flood itself is answered 404 (unknown) or, past its budget, 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_campaign_reads_leaves_issuance_working() {
    let stack = Stack::ingress_with(&["--max-in-flight=16", "--max-public-reads=16"]).await;
    let campaign = stack.open_campaign(200, 1).await;
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let flood = futures_util::stream::iter(0..64)
        .map(|_| {
            let (stack, flooding) = (&stack, &flooding);
            async move {
                let mut answers = Vec::new();
                while flooding.load(std::sync::atomic::Ordering::SeqCst) {
                    let url = format!("{}/v1/campaigns/{}", stack.base, uuid::Uuid::new_v4());
                    let response = stack.http.get(url).send().await.unwrap();
                    let retry = response.headers().contains_key("retry-after");
                    answers.push((response.status().as_u16(), retry));
                }
                answers
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    let honest = async {
        // Let the flood build up first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut statuses = Vec::new();
        for n in 0..40 {
            statuses.push(
                stack
                    .request(&campaign, &format!("flooded-{n}"))
                    .await
                    .status(),
            );
        }
        let view = admin_get(&stack, &format!("/v1/admin/campaigns/{campaign}")).await;
        flooding.store(false, std::sync::atomic::Ordering::SeqCst);
        (statuses, view.status())
    };
    let (floods, (statuses, operator)) =
        tokio::time::timeout(HANG, async { tokio::join!(flood, honest) })
            .await
            .expect("the flood and the honest requests end");
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    assert_eq!(operator, 200, "an operator read during the flood");
    let floods: Vec<(u16, bool)> = floods.into_iter().flatten().collect();
    assert!(floods.len() >= 64, "the flood ran");
    for (status, retry_after) in &floods {
        assert!(
            *status == 404 || (*status == 503 && *retry_after),
            "a flood read answered {status} (Retry-After: {retry_after})"
        );
    }
    assert_eq!(stack.admin_campaign(&campaign).await["accepted"], 40);
}

/// The two budgets are apart: with every public read permit taken, a public read is 503 with
/// `Retry-After` at once and issuance still answers 202; with every in-flight permit taken,
/// issuance is shed and public reads still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_and_issuance_have_budgets_of_their_own() {
    let stack = Stack::ingress_with(&["--max-in-flight=4", "--max-public-reads=4"]).await;
    let campaign = stack.open_campaign(10, 1).await;
    let url = format!("{}/v1/campaigns/{campaign}", stack.base);

    let held: Vec<_> = (0..4).map(|_| stack.app.public.admit().unwrap()).collect();
    let refused = stack.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(stack.request(&campaign, "first").await.status(), 202);
    drop(held);

    let held = stack.app.in_flight.try_acquire_many(4).unwrap();
    assert_eq!(stack.request(&campaign, "second").await.status(), 503);
    assert_eq!(stack.http.get(&url).send().await.unwrap().status(), 200);
    drop(held);
    assert_eq!(stack.request(&campaign, "second").await.status(), 202);
}

/// An id read while the ledger lacks it (404, remembered as unknown for a short while) reads
/// as the campaign once it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_read_as_unknown_becomes_visible_once_created() {
    let stack = Stack::ingress_only().await;
    let id = uuid::Uuid::now_v7();
    let url = format!("{}/v1/campaigns/{id}", stack.base);
    assert_eq!(stack.http.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(stack.http.get(&url).send().await.unwrap().status(), 404);
    let now = OffsetDateTime::now_utc();
    let db = stack.fixture.db().await;
    db.execute(
        include_str!("../../src/sql/campaigns_insert.sql"),
        &[
            &id,
            &"created after the read",
            &5_i32,
            &1_i32,
            &(now - Duration::from_secs(60)),
            &(now + Duration::from_secs(3600)),
            &"fixed",
            &100_i64,
            &7_i32,
        ],
    )
    .await
    .unwrap();
    let body = testkit::eventually(Duration::from_secs(30), "the campaign to read", || async {
        let response = stack.http.get(&url).send().await.ok()?;
        (response.status() == 200).then_some(())?;
        response.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(body["name"], "created after the read");
}

/// The ledger refuses a value (SQLSTATE class 22): the request was bad, 400. Any other failure
/// of the ledger stays 503. A campaign name with NUL, and a moment past the year 9999 in UTC,
/// are refused before the ledger sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_data_errors_are_400_and_a_nul_name_changes_nothing() {
    use ingress::http::problem::Problem;
    let stack = Stack::ingress_only().await;
    let db = stack.fixture.db().await;
    let nul = db
        .query_one("SELECT $1::text", &[&"a\0b"])
        .await
        .unwrap_err();
    let division = db.query_one("SELECT 1 / 0", &[]).await.unwrap_err();
    let date = db
        .query_one("SELECT '2024-02-30'::date", &[])
        .await
        .unwrap_err();
    for refused in [nul, division, date] {
        assert!(
            matches!(Problem::from(refused), Problem::BadRequest(_)),
            "class 22 is the caller's"
        );
    }
    let missing = db
        .query_one("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    assert!(matches!(
        Problem::from(missing),
        Problem::Unavailable { .. }
    ));

    let before = stack.fixture.footprint().await;
    let now = OffsetDateTime::now_utc();
    let long = "€".repeat(201);
    for name in ["nul\0inside", "bell\u{7}", "\u{85}", long.as_str()] {
        let mut body = campaign_body(0, now);
        body["name"] = json!(name);
        let response = stack.admin_post("/v1/admin/campaigns", &body).await;
        assert_eq!(response.status(), 400, "{name:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/bad-request");
    }
    // A valid RFC 3339 text, but the year 10000 in UTC: refused, never sent to the ledger.
    let mut body = campaign_body(0, now);
    body["ends_at"] = json!("9999-12-31T23:59:59.999999999-23:59");
    let response = stack.admin_post("/v1/admin/campaigns", &body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(stack.fixture.footprint().await, before);
    let open = stack.open_campaign(5, 1).await;
    let before = stack.fixture.footprint().await;
    let response = stack
        .http
        .patch(format!("{}/v1/admin/campaigns/{open}", stack.base))
        .bearer_auth(stack.admin_token())
        .json(&json!({"ends_at": "9999-12-31T23:59:59-01:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(stack.fixture.footprint().await, before);
    // 200 characters of three bytes each are a valid name.
    let mut body = campaign_body(0, now);
    body["name"] = json!("€".repeat(200));
    assert_eq!(
        stack
            .admin_post("/v1/admin/campaigns", &body)
            .await
            .status(),
        201
    );
}
