//! The ingress's HTTP API, with the ingress (and, where a test needs coupons, the consumer)
//! running in this process on the real Redis, Kafka and PostgreSQL (`support::Stack`).
//! Suites that span processes are in the `e2e` crate.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod availability;
mod bad_input;
mod browsers;
mod campaigns;
mod coupons;
mod openapi;
mod produced;
mod security;
mod support;
mod waiting;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::Stack;
use testkit::{token, token_with_secret};
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_request_becomes_a_coupon_and_reads_as_issued() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(5, 1).await;

    let response = stack.request(&campaign, "alice").await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let issuance = body["issuance_id"].as_str().unwrap().to_owned();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["campaign_id"], campaign.as_str());
    assert_eq!(location, format!("/v1/issuances/{issuance}"));

    stack.fixture.wait_for_coupons(&campaign, 1).await;
    let status: Value = stack.status(&issuance, "alice").await.json().await.unwrap();
    assert_eq!(status["status"], "issued");
    assert_eq!(status["coupon"]["seq"], 1);
    assert_eq!(status["coupon"]["status"], "issued");

    let view = stack.admin_campaign(&campaign).await;
    assert_eq!(
        (
            view["total_stock"].as_i64(),
            view["remaining"].as_i64(),
            view["accepted"].as_i64(),
            view["issued"].as_i64()
        ),
        (Some(5), Some(4), Some(1), Some(1))
    );
    // Another user cannot see it.
    assert_eq!(stack.status(&issuance, "mallory").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_by_the_same_user_gets_409_with_the_same_issuance_id() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(5, 1).await;
    let first: Value = stack.request(&campaign, "bob").await.json().await.unwrap();
    let again = stack.request(&campaign, "bob").await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let problem: Value = again.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/already-issued");
    assert_eq!(problem["issuance_id"], first["issuance_id"]);
    stack.fixture.wait_for_coupons(&campaign, 1).await;
    assert_eq!(stack.admin_campaign(&campaign).await["remaining"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit_above_one_issues_numbered_coupons() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(10, 2).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = stack.request(&campaign, "carol").await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["issuance_id"].as_str().unwrap().to_owned());
    }
    let third: Value = stack
        .request(&campaign, "carol")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["issuance_id"].as_str(), Some(ids[1].as_str()));
    stack.fixture.wait_for_coupons(&campaign, 2).await;
    let db = stack.fixture.db().await;
    let seqs: Vec<i32> = db
        .query(
            "SELECT seq FROM coupons WHERE user_id = 'carol' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_of_ten_among_twenty_five_users_accepts_exactly_ten() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(10, 1).await;
    let mut statuses = HashMap::new();
    for n in 0..25 {
        let response = stack.request(&campaign, &format!("user-{n}")).await;
        if response.status() == 410 {
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["type"], "/problems/sold-out");
            *statuses.entry(410).or_insert(0) += 1;
        } else {
            *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
        }
    }
    assert_eq!(statuses, HashMap::from([(202, 10), (410, 15)]));
    stack.fixture.wait_for_coupons(&campaign, 10).await;
    assert_eq!(stack.admin_campaign(&campaign).await["remaining"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_burst_never_oversells_nor_duplicates() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(1_000, 1).await;
    // 1,500 distinct users, 500 of them tapping twice: 2,000 requests in flight together.
    let users: Vec<String> = (0..1_500)
        .map(|n| format!("burst-{n}"))
        .chain((0..500).map(|n| format!("burst-{}", n * 3)))
        .collect();
    let answers: Vec<(String, u16, Option<String>)> = futures_util::stream::iter(users)
        .map(|user| {
            let stack = &stack;
            let campaign = &campaign;
            async move {
                let response = stack.request(campaign, &user).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                let id = body["issuance_id"].as_str().map(str::to_owned);
                (user, status, id)
            }
        })
        .buffer_unordered(2_000)
        .collect()
        .await;

    let accepted: Vec<&(String, u16, Option<String>)> =
        answers.iter().filter(|a| a.1 == 202).collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for answer in &answers {
        *by_status.entry(answer.1).or_default() += 1;
    }
    assert_eq!(
        accepted.len(),
        1_000,
        "exactly the stock is accepted: {by_status:?}"
    );
    let accepted_users: HashSet<&str> = accepted.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(accepted_users.len(), 1_000, "no user accepted twice");
    for (user, status, id) in &answers {
        assert!(matches!(status, 202 | 409 | 410), "unexpected {status}");
        if *status == 409 {
            // A repeat names the issuance its user was accepted with.
            let original = accepted.iter().find(|a| &a.0 == user).expect("holder");
            assert_eq!(id, &original.2);
        }
    }

    stack.fixture.wait_for_coupons(&campaign, 1_000).await;
    let db = stack.fixture.db().await;
    let distinct: i64 = db
        .query_one("SELECT count(DISTINCT user_id) FROM coupons", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 1_000);
    let view = stack.admin_campaign(&campaign).await;
    assert_eq!(
        (view["remaining"].as_i64(), view["issued"].as_i64()),
        (Some(0), Some(1_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_is_403_and_reserves_nothing() {
    let stack = Stack::ingress_only().await;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let later = stack
        .campaign_with_window(5, 1, now + hour, now + 2 * hour)
        .await;
    let over = stack
        .campaign_with_window(5, 1, now - 2 * hour, now - hour)
        .await;
    let before = stack.fixture.footprint().await;
    for campaign in [&later, &over] {
        let response = stack.request(campaign, "dave").await;
        assert_eq!(response.status(), 403);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/campaign-not-open");
    }
    assert_eq!(stack.fixture.footprint().await, before);
    assert_eq!(stack.admin_campaign(&later).await["remaining"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let before = stack.fixture.footprint().await;
    let url = format!("{}/v1/campaigns/{campaign}/issuances", stack.base);
    let post = |auth: Option<String>| {
        let request = stack.http.post(&url);
        match auth {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    };

    let unauthorized = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer not.a.jwt".to_owned()),
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some(format!("Bearer {}", token("erin", None, -120))),
        Some(format!(
            "Bearer {}",
            token_with_secret("erin", None, 3600, "wrong-secret-0123")
        )),
        Some(format!("Bearer {}", none_alg_token("erin"))),
    ];
    for auth in unauthorized {
        let response = post(auth.clone()).send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    let user = format!("Bearer {}", token("erin", None, 3600));
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            stack.http.post(format!(
                "{}/v1/campaigns/{}/issuances",
                stack.base,
                uuid::Uuid::now_v7()
            )),
            404,
        ),
        (
            stack
                .http
                .post(format!("{}/v1/campaigns/not-a-uuid/issuances", stack.base)),
            400,
        ),
        (
            post(None)
                .body("{not json")
                .header("content-type", "application/json"),
            400,
        ),
        (
            post(None)
                .body("[1,2]")
                .header("content-type", "application/json"),
            400,
        ),
        (
            post(None)
                .body("x".repeat(10_000))
                .header("content-type", "application/json"),
            413,
        ),
        (
            post(None).body("{}").header("content-type", "text/plain"),
            415,
        ),
        (
            stack
                .http
                .get(format!("{}/v1/issuances/not-an-id", stack.base)),
            400,
        ),
        (
            stack
                .http
                .get(format!("{}/v1/issuances/{}", stack.base, "a".repeat(64))),
            404,
        ),
        (
            stack
                .http
                .get(format!("{}/v1/admin/campaigns/{campaign}", stack.base)),
            403,
        ),
        (
            stack
                .http
                .post(format!("{}/v1/admin/campaigns", stack.base))
                .body("{}"),
            403,
        ),
        (stack.http.delete(&url), 405),
        (stack.http.get(format!("{}/nowhere", stack.base)), 404),
    ];
    for (request, expected) in cases {
        let response = request.header("authorization", &user).send().await.unwrap();
        assert_eq!(response.status(), expected);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    // Campaign bodies the operator API refuses.
    let invalid = [
        json!({}),
        json!({"name": "x", "total_stock": 1, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2029-01-01T00:00:00Z",
               "discount": {"kind": "fixed", "value": 1}, "coupon_valid_days": 1}),
        json!({"name": "x", "total_stock": 1, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2031-01-01T00:00:00Z",
               "discount": {"kind": "percent", "value": 150}, "coupon_valid_days": 1}),
        json!({"name": "x", "total_stock": -1, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2031-01-01T00:00:00Z",
               "discount": {"kind": "fixed", "value": 1}, "coupon_valid_days": 1}),
        json!({"name": "x", "total_stock": 1, "starts_at": "yesterday", "ends_at": "2031-01-01T00:00:00Z",
               "discount": {"kind": "fixed", "value": 1}, "coupon_valid_days": 1}),
        json!({"name": "x", "total_stock": 1, "per_user_limit": 0, "starts_at": "2030-01-01T00:00:00Z",
               "ends_at": "2031-01-01T00:00:00Z", "discount": {"kind": "fixed", "value": 1}, "coupon_valid_days": 1}),
    ];
    for body in invalid {
        let response = stack.admin_post("/v1/admin/campaigns", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }

    assert_eq!(stack.fixture.footprint().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_accepted_until_persisted_and_hides_other_users() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let body: Value = stack
        .request(&campaign, "frank")
        .await
        .json()
        .await
        .unwrap();
    let issuance = body["issuance_id"].as_str().unwrap();
    let status: Value = stack.status(issuance, "frank").await.json().await.unwrap();
    assert_eq!(status["status"], "accepted");
    assert_eq!(stack.status(issuance, "grace").await.status(), 404);
    assert_eq!(stack.fixture.topic_len(&stack.fixture.topic).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer() {
    let stack = Stack::ingress_only().await;
    let health = stack
        .http
        .get(format!("{}/healthz", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// A release (Kafka refused the event) hands the unit back once, and the status says so; a
/// reservation Kafka confirmed can no longer be released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_reservation_returns_its_stock_once() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(2, 1).await;
    // As the ingress does before producing: reserve, then (here) learn Kafka refused the event.
    let issuance = stack.reserve_without_event(&campaign, "heidi").await;
    let confirmed: Value = stack.request(&campaign, "ivan").await.json().await.unwrap();
    assert_eq!(stack.request(&campaign, "judy").await.status(), 410);

    assert!(
        stack
            .app
            .gate
            .release(&issuance, 1, "kafka-refused")
            .await
            .unwrap()
    );
    assert!(
        !stack
            .app
            .gate
            .release(&issuance, 1, "kafka-refused")
            .await
            .unwrap()
    );
    let status: Value = stack
        .status(&issuance.to_string(), "heidi")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("released"), Some("kafka-refused"))
    );
    let view = stack.admin_campaign(&campaign).await;
    assert_eq!(
        (
            view["remaining"].as_i64(),
            view["accepted"].as_i64(),
            view["released"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );

    // Ivan's event was confirmed: his reservation left the journal and cannot be released.
    stack.wait_for_empty_journal(&campaign).await;
    let ivan: schema::ids::IssuanceId = confirmed["issuance_id"].as_str().unwrap().parse().unwrap();
    assert!(
        !stack
            .app
            .gate
            .release(&ivan, 1, "kafka-refused")
            .await
            .unwrap()
    );

    // The unit is available again, and the released user may try again.
    assert_eq!(stack.request(&campaign, "heidi").await.status(), 202);
    assert_eq!(stack.admin_campaign(&campaign).await["remaining"], 0);
}

/// `{"alg":"none"}` with an empty signature.
fn none_alg_token(sub: &str) -> String {
    use std::io::Write;
    let b64 = |bytes: &[u8]| {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = Vec::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.write_all(&[T[((n >> (18 - 6 * i)) & 63) as usize]])
                    .unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    };
    let exp = OffsetDateTime::now_utc().unix_timestamp() + 3600;
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(json!({"sub": sub, "exp": exp}).to_string().as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_reservations_leave_the_journal() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(50, 1).await;
    for n in 0..20 {
        assert_eq!(
            stack.request(&campaign, &format!("j-{n}")).await.status(),
            202
        );
    }
    stack.wait_for_empty_journal(&campaign).await;
    // Cleared by confirmation, not rolled forward: each event is on the topic once.
    assert_eq!(stack.fixture.topic_len(&stack.fixture.topic).await, 20);
}

/// The state an ingress leaves when it dies between the reservation and the produce: an
/// admission with no event. The sweeper rolls it forward with the same issuance id, and from
/// then on it can no longer be released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_whose_event_was_never_produced_is_rolled_forward() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(5, 1).await;
    let issuance = stack.reserve_without_event(&campaign, "orphan").await;

    stack.fixture.wait_for_coupons(&campaign, 1).await;
    stack.wait_for_empty_journal(&campaign).await;
    let status: Value = stack
        .status(&issuance.to_string(), "orphan")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "issued");
    assert!(
        !stack
            .app
            .gate
            .release(&issuance, 1, "kafka-refused")
            .await
            .unwrap()
    );
    let view = stack.admin_campaign(&campaign).await;
    assert_eq!(
        (view["remaining"].as_i64(), view["issued"].as_i64()),
        (Some(4), Some(1))
    );
}

/// Redis restarted empty: the ingress re-seeds the campaign from the ledger, holders included,
/// so nobody gets a second coupon and the stock left is what the ledger says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_the_gate_lost_is_reseeded_from_the_ledger() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(5, 1).await;
    for user in ["kim", "lee", "park"] {
        assert_eq!(stack.request(&campaign, user).await.status(), 202);
    }
    stack.fixture.wait_for_coupons(&campaign, 3).await;
    stack.wait_for_empty_journal(&campaign).await;

    let mut redis = stack.fixture.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", stack.fixture.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();

    testkit::eventually(Duration::from_secs(30), "the re-seed", || async {
        let view = stack.admin_campaign(&campaign).await;
        (view["remaining"].as_i64() == Some(2)).then_some(())
    })
    .await;
    assert_eq!(stack.request(&campaign, "kim").await.status(), 409);
    assert_eq!(stack.request(&campaign, "choi").await.status(), 202);
    assert_eq!(stack.request(&campaign, "jung").await.status(), 202);
    assert_eq!(stack.request(&campaign, "kang").await.status(), 410);
    stack.fixture.wait_for_coupons(&campaign, 5).await;
}

/// Bounded Redis memory: the sweeper gives every key of a live campaign, the ones admissions
/// created included, an expiry at the campaign's end plus `GATE_KEY_RETENTION_MS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_lets_every_gate_key_expire_after_the_campaign() {
    let stack = Stack::ingress_with(&["--gate-key-retention-ms=120000"]).await;
    let campaign = stack.open_campaign(5, 1).await;
    for user in ["kim", "lee"] {
        assert_eq!(stack.request(&campaign, user).await.status(), 202);
    }
    let view = stack.admin_campaign(&campaign).await;
    let ends_at = time::OffsetDateTime::parse(
        view["ends_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expiry_ms = (ends_at.unix_timestamp_nanos() / 1_000_000) as i64 + 120_000;
    let redis = stack.fixture.redis().await;
    let pattern = format!("{}{{c:{campaign}}}:*", stack.fixture.redis_prefix);
    testkit::eventually(Duration::from_secs(20), "every key's expiry", || async {
        let mut redis = redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut redis)
            .await
            .ok()?;
        let mut all = keys.len() >= 4;
        for key in &keys {
            let at: i64 = redis::cmd("PEXPIRETIME")
                .arg(key)
                .query_async(&mut redis)
                .await
                .ok()?;
            all &= at == expiry_ms;
        }
        all.then_some(())
    })
    .await;
}
