//! Operator changes to a campaign: stock added during a burst is issued exactly, and the rules
//! of what may change when (stock and window only grow, the limit only before the start, a
//! closed campaign stays closed and admits nobody).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::Stack;

async fn patch(stack: &Stack, campaign: &str, body: Value) -> reqwest::Response {
    stack
        .http
        .patch(format!("{}/v1/admin/campaigns/{campaign}", stack.base))
        .bearer_auth(stack.admin_token())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn close(stack: &Stack, campaign: &str) -> reqwest::Response {
    stack
        .http
        .post(format!(
            "{}/v1/admin/campaigns/{campaign}/close",
            stack.base
        ))
        .bearer_auth(stack.admin_token())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_added_during_a_burst_is_issued_exactly() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(40, 1).await;
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let burst = futures_util::stream::iter(0..150)
        .map(|n| {
            let stack = &stack;
            let campaign = &campaign;
            let answered = &answered;
            async move {
                let status = stack.request(campaign, &format!("grow-{n}")).await.status();
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status.as_u16()
            }
        })
        .buffer_unordered(24)
        .collect::<Vec<u16>>();
    let grow = async {
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 30 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        patch(&stack, &campaign, json!({"total_stock": 80})).await
    };
    let (mut statuses, grown) = tokio::join!(burst, grow);
    assert_eq!(grown.status(), 200);
    // On a slow machine the change may land late in the burst: more users take what is left.
    for n in 150..250 {
        statuses.push(
            stack
                .request(&campaign, &format!("grow-{n}"))
                .await
                .status()
                .as_u16(),
        );
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert_eq!(
        accepted, 80,
        "every added unit was admitted once: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 410].contains(s)),
        "{statuses:?}"
    );
    stack.wait_for_coupons(&campaign, 80).await;
    let view = stack.admin_campaign(&campaign).await;
    assert_eq!(
        (
            &view["total_stock"],
            &view["remaining"],
            &view["accepted"],
            &view["issued"]
        ),
        (&json!(80), &json!(0), &json!(80), &json!(80))
    );
    let db = stack.fixture.db().await;
    let rejected: i64 = db
        .query_one("SELECT count(*) FROM issuance_rejections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rejected, 0, "the ledger accepted every admission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_may_change_and_when() {
    let stack = Stack::ingress_only().await;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let at = |t: OffsetDateTime| t.format(&Rfc3339).unwrap();

    // Before the start, the per-user limit may change; after it, not.
    let scheduled = stack
        .campaign_with_window(5, 1, now + hour, now + 2 * hour)
        .await;
    let changed: Value = patch(&stack, &scheduled, json!({"per_user_limit": 3}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["per_user_limit"], 3);
    let open = stack.open_campaign(5, 1).await;
    for (body, status) in [
        (json!({"per_user_limit": 2}), 409),
        (json!({"total_stock": 4}), 409),
        (json!({"ends_at": at(now)}), 409),
        (json!({"total_stock": 200_000_000}), 400),
        (json!({"color": "red"}), 400),
    ] {
        assert_eq!(
            patch(&stack, &open, body.clone()).await.status(),
            status,
            "{body}"
        );
    }
    let user_patch = stack
        .http
        .patch(format!("{}/v1/admin/campaigns/{open}", stack.base))
        .bearer_auth(testkit::token("user", None, 600))
        .json(&json!({"total_stock": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(user_patch.status(), 403);

    // An ended campaign reopens when its window is extended.
    let ended = stack
        .campaign_with_window(5, 1, now - 2 * hour, now - hour)
        .await;
    assert_eq!(stack.request(&ended, "late").await.status(), 403);
    let extended = patch(&stack, &ended, json!({"ends_at": at(now + hour)})).await;
    assert_eq!(extended.status(), 200);
    assert_eq!(stack.request(&ended, "late").await.status(), 202);

    // Closed early: nobody is admitted, nothing changes it, closing again is harmless.
    assert_eq!(stack.request(&open, "first").await.status(), 202);
    let closed: Value = close(&stack, &open).await.json().await.unwrap();
    assert_eq!(closed["status"], "closed");
    let refused = stack.request(&open, "second").await;
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/campaign-not-open");
    assert_eq!(
        patch(&stack, &open, json!({"total_stock": 10}))
            .await
            .status(),
        409
    );
    assert_eq!(close(&stack, &open).await.status(), 200);
    let view = stack.admin_campaign(&open).await;
    assert_eq!(
        (&view["status"], &view["accepted"]),
        (&json!("closed"), &json!(1))
    );
}

/// Public reads: anyone may read an open campaign and the list of open and upcoming ones, with
/// `remaining` at most a second old; closed and ended campaigns leave the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_campaign_reads_are_cached_figures() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let other = stack.open_campaign(5, 1).await;
    let get = |path: String| {
        let http = stack.http.clone();
        async move { http.get(path).send().await.unwrap() }
    };
    let one = get(format!("{}/v1/campaigns/{campaign}", stack.base)).await;
    assert_eq!(one.status(), 200, "no token needed");
    let body: Value = one.json().await.unwrap();
    assert_eq!(
        (&body["status"], &body["remaining"]),
        (&json!("open"), &json!(5))
    );
    assert_eq!(stack.request(&campaign, "reader").await.status(), 202);
    testkit::eventually(Duration::from_secs(5), "the new remaining", || async {
        let body: Value = get(format!("{}/v1/campaigns/{campaign}", stack.base))
            .await
            .json()
            .await
            .ok()?;
        (body["remaining"] == 4).then_some(())
    })
    .await;

    assert_eq!(close(&stack, &other).await.status(), 200);
    let listed = testkit::eventually(
        Duration::from_secs(5),
        "the list without the closed one",
        || async {
            let body: Value = get(format!("{}/v1/campaigns", stack.base))
                .await
                .json()
                .await
                .ok()?;
            let ids: Vec<String> = body["items"]
                .as_array()?
                .iter()
                .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            (!ids.contains(&other)).then_some(ids)
        },
    )
    .await;
    assert!(listed.contains(&campaign));
    let unknown = get(format!(
        "{}/v1/campaigns/{}",
        stack.base,
        uuid::Uuid::now_v7()
    ))
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        get(format!("{}/v1/campaigns/nope", stack.base))
            .await
            .status(),
        400
    );
}
