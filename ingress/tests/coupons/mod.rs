//! The user's coupons: listing newest first with pagination and owner-only visibility;
//! redemption by the order service (once, idempotent per order, concurrent orders: exactly one
//! wins, expired: 410), the refund that hands a redeemed coupon back, never by the user's own
//! token; and an operator's cancellation.

use std::collections::HashSet;

use serde_json::{Value, json};
use testkit::token;

use crate::support::Stack;

async fn my_coupons(stack: &Stack, user: &str, query: &str) -> Value {
    let response = stack
        .http
        .get(format!("{}/v1/me/coupons{query}", stack.base))
        .bearer_auth(token(user, None, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The order service's token: it redeems and refunds for every user.
fn service_token() -> String {
    token("order-service", Some("service"), 600)
}

/// `POST /v1/coupons/{coupon}/{action}` with `bearer`.
async fn order_call(
    stack: &Stack,
    action: &str,
    bearer: &str,
    coupon: &str,
    body: &Value,
) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/v1/coupons/{coupon}/{action}", stack.base))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The order service redeems `user`'s coupon; `body` gets `user_id` when it is an object
/// without one.
async fn redeem(stack: &Stack, user: &str, coupon: &str, mut body: Value) -> reqwest::Response {
    if let Some(fields) = body.as_object_mut() {
        fields.entry("user_id").or_insert_with(|| user.into());
    }
    order_call(stack, "redeem", &service_token(), coupon, &body).await
}

/// The order service refunds `order`'s redemption of `user`'s coupon.
async fn refund(stack: &Stack, user: &str, coupon: &str, order: &str) -> reqwest::Response {
    let body = json!({"order_id": order, "user_id": user});
    order_call(stack, "refund", &service_token(), coupon, &body).await
}

async fn cancel(stack: &Stack, bearer: &str, coupon: &str) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/v1/admin/coupons/{coupon}/cancel", stack.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

async fn problem_type(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["type"].as_str().unwrap_or_default().to_owned())
}

/// Three coupons for one user, from two campaigns.
async fn three_coupons(stack: &Stack, user: &str) -> (String, String) {
    let first = stack.open_campaign(10, 2).await;
    let second = stack.open_campaign(10, 1).await;
    for campaign in [&first, &first, &second] {
        assert_eq!(stack.request(campaign, user).await.status(), 202);
    }
    stack.fixture.wait_for_coupons(&first, 2).await;
    stack.fixture.wait_for_coupons(&second, 1).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_coupons_are_listed_newest_first_in_pages_and_only_mine() {
    let stack = Stack::pipeline().await;
    three_coupons(&stack, "lena").await;
    let page = my_coupons(&stack, "lena", "?limit=2").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let rest = my_coupons(&stack, "lena", &format!("?limit=2&cursor={cursor}")).await;
    let more = rest["items"].as_array().unwrap();
    assert_eq!(more.len(), 1);
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    let all: Vec<&Value> = items.iter().chain(more).collect();
    let issued: Vec<&str> = all
        .iter()
        .map(|c| c["issued_at"].as_str().unwrap())
        .collect();
    let mut sorted = issued.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(issued, sorted, "newest first");
    let codes: HashSet<&str> = all.iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes.len(), 3, "a distinct code per coupon");
    assert!(codes.iter().all(|c| c.len() == 32), "{codes:?}");
    assert!(all.iter().all(|c| c["status"] == "issued"));

    assert_eq!(my_coupons(&stack, "nobody", "").await["items"], json!([]));
    let bad = stack
        .http
        .get(format!("{}/v1/me/coupons?cursor=garbage", stack.base))
        .bearer_auth(token("lena", None, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coupon_is_redeemed_once_per_order() {
    let stack = Stack::pipeline().await;
    three_coupons(&stack, "omar").await;
    let page = my_coupons(&stack, "omar", "").await;
    let coupons: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coupon_id"].as_str().unwrap().to_owned())
        .collect();

    // Redeemed once; the same order again is the same answer; another order is refused.
    let first = redeem(&stack, "omar", &coupons[0], json!({"order_id": "order-1"})).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "redeemed");
    assert_eq!(first["order_id"], "order-1");
    let again = redeem(&stack, "omar", &coupons[0], json!({"order_id": "order-1"})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["redeemed_at"], first["redeemed_at"], "idempotent");
    let other = redeem(&stack, "omar", &coupons[0], json!({"order_id": "order-2"})).await;
    assert_eq!(other.status(), 409);
    let problem: Value = other.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/coupon-redeemed");

    // Two orders at once on one coupon: exactly one wins.
    let (a, b) = tokio::join!(
        redeem(&stack, "omar", &coupons[1], json!({"order_id": "race-a"})),
        redeem(&stack, "omar", &coupons[1], json!({"order_id": "race-b"})),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);

    // Someone else's coupon does not exist for them; bad bodies change nothing.
    assert_eq!(
        redeem(&stack, "mallory", &coupons[2], json!({"order_id": "x"}))
            .await
            .status(),
        404
    );
    for body in [
        json!({}),
        json!({"order_id": ""}),
        json!({"order_id": 5}),
        json!({"order_id": "x", "user_id": ""}),
        json!({"order_id": "x", "user_id": 5}),
        json!({"order_id": "a".repeat(200)}),
    ] {
        assert_eq!(
            redeem(&stack, "omar", &coupons[2], body).await.status(),
            400
        );
    }
    assert_eq!(
        redeem(&stack, "omar", "not-a-uuid", json!({"order_id": "x"}))
            .await
            .status(),
        400
    );

    // Past its validity: 410, and listed as expired.
    let db = stack.fixture.db().await;
    let id: uuid::Uuid = coupons[2].parse().unwrap();
    db.execute(
        "UPDATE coupons SET expires_at = now() - interval '1 minute' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let expired = redeem(&stack, "omar", &coupons[2], json!({"order_id": "late"})).await;
    assert_eq!(expired.status(), 410);
    let listed = my_coupons(&stack, "omar", "").await;
    let status = |id: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["coupon_id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&coupons[2]), "expired");
    assert_eq!(status(&coupons[0]), "redeemed");
    let redeemed: i64 = db
        .query_one(
            "SELECT count(*) FROM coupons WHERE status = 'redeemed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(redeemed, 2);
}

/// A refunded order hands its coupon back (redeemed -> issued, redeemable again); an operator's
/// cancellation is final and returns no stock; both are idempotent and owner/role checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_return_the_coupon_and_cancellation_is_final() {
    let stack = Stack::pipeline().await;
    let (first, _) = three_coupons(&stack, "rita").await;
    let page = my_coupons(&stack, "rita", "").await;
    let coupons: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coupon_id"].as_str().unwrap().to_owned())
        .collect();
    let (kept, voided, spent) = (&coupons[0], &coupons[1], &coupons[2]);

    // Refund: only the order that redeemed it, once; the same refund again is the same answer.
    assert_eq!(
        problem_type(refund(&stack, "rita", kept, "order-1").await).await,
        (409, "/problems/not-redeemed-by-order".to_owned()),
        "nothing to refund yet"
    );
    assert_eq!(
        redeem(&stack, "rita", kept, json!({"order_id": "order-1"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        problem_type(refund(&stack, "rita", kept, "order-9").await).await,
        (409, "/problems/not-redeemed-by-order".to_owned())
    );
    assert_eq!(
        refund(&stack, "mallory", kept, "order-1").await.status(),
        404
    );
    let refunded = refund(&stack, "rita", kept, "order-1").await;
    assert_eq!(refunded.status(), 200);
    let refunded: Value = refunded.json().await.unwrap();
    assert_eq!(refunded["status"], "issued");
    assert!(refunded.get("order_id").is_none(), "{refunded}");
    let again: Value = refund(&stack, "rita", kept, "order-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "issued", "idempotent");
    // Back in the user's hands: another order may redeem it.
    assert_eq!(
        redeem(&stack, "rita", kept, json!({"order_id": "order-2"}))
            .await
            .status(),
        200
    );

    // Cancellation: operators only; final; a redeemed coupon must be refunded first.
    let user_token = token("rita", None, 600);
    assert_eq!(cancel(&stack, &user_token, voided).await.status(), 403);
    let cancelled = cancel(&stack, &stack.admin_token(), voided).await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    let again: Value = cancel(&stack, &stack.admin_token(), voided)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["cancelled_at"], cancelled["cancelled_at"],
        "idempotent"
    );
    assert_eq!(
        problem_type(redeem(&stack, "rita", voided, json!({"order_id": "o"})).await).await,
        (409, "/problems/coupon-cancelled".to_owned())
    );
    assert_eq!(
        problem_type(refund(&stack, "rita", voided, "o").await).await,
        (409, "/problems/coupon-cancelled".to_owned())
    );
    assert_eq!(
        redeem(&stack, "rita", spent, json!({"order_id": "order-3"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        problem_type(cancel(&stack, &stack.admin_token(), spent).await).await,
        (409, "/problems/coupon-redeemed".to_owned())
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        cancel(&stack, &stack.admin_token(), &unknown)
            .await
            .status(),
        404
    );
    assert_eq!(
        cancel(&stack, &stack.admin_token(), "nope").await.status(),
        400
    );

    // No stock came back: the campaign still counts every coupon issued, and the gate has
    // exactly what it had.
    let statuses: Vec<Value> = my_coupons(&stack, "rita", "").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "cancelled").count(),
        1,
        "{statuses:?}"
    );
    let view = stack.admin_campaign(&first).await;
    assert_eq!(
        (&view["issued"], &view["remaining"]),
        (&json!(2), &json!(8))
    );
}

/// Redeem and refund belong to the order service. A user's own token (or an operator's) is 403
/// on both, so a user cannot refund their coupon and redeem it again; the order service can
/// refund a real redemption once, and a late or replayed redeem for a refunded order does not
/// redeem the coupon again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_order_service_redeems_and_refunds() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(10, 1).await;
    assert_eq!(stack.request(&campaign, "uma").await.status(), 202);
    stack.fixture.wait_for_coupons(&campaign, 1).await;
    let page = my_coupons(&stack, "uma", "").await;
    let coupon = page["items"][0]["coupon_id"].as_str().unwrap().to_owned();
    let body = json!({"order_id": "order-1", "user_id": "uma"});

    // The sequence a user could run against themselves: every step is refused.
    let own = token("uma", None, 600);
    let forged_role = token("uma", Some("admin"), 600);
    for bearer in [&own, &forged_role] {
        for action in ["redeem", "refund"] {
            assert_eq!(
                problem_type(order_call(&stack, action, bearer, &coupon, &body).await).await,
                (403, "/problems/forbidden".to_owned()),
                "{action}"
            );
        }
    }
    assert_eq!(
        my_coupons(&stack, "uma", "").await["items"][0]["status"],
        "issued",
        "refused calls changed nothing"
    );

    // The order service: redeem, refund, and the same refund again.
    assert_eq!(
        redeem(&stack, "uma", &coupon, body.clone()).await.status(),
        200
    );
    assert_eq!(
        problem_type(order_call(&stack, "refund", &own, &coupon, &body).await).await,
        (403, "/problems/forbidden".to_owned()),
        "a redeemed coupon: still not the user's to refund"
    );
    assert_eq!(
        refund(&stack, "uma", &coupon, "order-1").await.status(),
        200
    );
    assert_eq!(
        refund(&stack, "uma", &coupon, "order-1").await.status(),
        200
    );

    // A late or replayed redeem for the refunded order: refused, the coupon stays usable.
    assert_eq!(
        problem_type(redeem(&stack, "uma", &coupon, body.clone()).await).await,
        (409, "/problems/order-refunded".to_owned())
    );
    let listed = my_coupons(&stack, "uma", "").await;
    assert_eq!(listed["items"][0]["status"], "issued");
    // The history names each redemption once, the refunded one with its refund.
    let db = stack.fixture.db().await;
    let id: uuid::Uuid = coupon.parse().unwrap();
    let history: Vec<(String, bool)> = db
        .query(
            "SELECT order_id, refunded_at IS NOT NULL FROM redemptions WHERE coupon_id = $1 ORDER BY redeemed_at",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(history, vec![("order-1".to_owned(), true)]);
    // A new order of the same user may redeem it; a refund must name a real redemption.
    let second = json!({"order_id": "order-2", "user_id": "uma"});
    assert_eq!(redeem(&stack, "uma", &coupon, second).await.status(), 200);
    assert_eq!(
        problem_type(refund(&stack, "uma", &coupon, "order-3").await).await,
        (409, "/problems/not-redeemed-by-order".to_owned())
    );
}
