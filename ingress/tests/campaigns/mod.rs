//! Operator changes to a campaign: stock added during a burst is issued exactly, and the rules
//! of what may change when (stock and window only grow; the limit, discount and validity only
//! before the start; a closed or ended campaign stays so and admits nobody). The operator list
//! and view, and public reads.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::Stack;

mod operator;

async fn patch(stack: &Stack, campaign: &str, body: Value) -> reqwest::Response {
    stack.patch_campaign(campaign, &body).await
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
    stack.fixture.wait_for_coupons(&campaign, 80).await;
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

    // The discount and the coupons' validity: before the start only.
    let changed: Value = patch(
        &stack,
        &scheduled,
        json!({"discount": {"kind": "percent", "value": 15}, "coupon_valid_days": 30}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (&changed["discount"], &changed["coupon_valid_days"]),
        (&json!({"kind": "percent", "value": 15}), &json!(30))
    );
    for (body, status) in [
        (json!({"discount": {"kind": "percent", "value": 150}}), 400),
        (json!({"coupon_valid_days": 0}), 400),
    ] {
        assert_eq!(
            patch(&stack, &scheduled, body.clone()).await.status(),
            status,
            "{body}"
        );
    }
    for body in [
        json!({"discount": {"kind": "fixed", "value": 1}}),
        json!({"coupon_valid_days": 8}),
    ] {
        assert_eq!(
            patch(&stack, &open, body.clone()).await.status(),
            409,
            "{body}"
        );
    }
    // Unchanged values are no change: allowed while open.
    assert_eq!(
        patch(
            &stack,
            &open,
            json!({"per_user_limit": 1, "coupon_valid_days": 7})
        )
        .await
        .status(),
        200
    );

    // Closing through PATCH: alone only.
    let patched = stack.open_campaign(5, 1).await;
    assert_eq!(
        patch(&stack, &patched, json!({"closed": true, "total_stock": 9}))
            .await
            .status(),
        400
    );
    let closed: Value = patch(&stack, &patched, json!({"closed": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(closed["status"], "closed");
    assert_eq!(stack.request(&patched, "after").await.status(), 403);

    // An ended campaign stays ended: its `closed` event is out.
    let ended = stack
        .campaign_with_window(5, 1, now - 2 * hour, now - hour)
        .await;
    assert_eq!(stack.request(&ended, "late").await.status(), 403);
    let extended = patch(&stack, &ended, json!({"ends_at": at(now + hour)})).await;
    assert_eq!(extended.status(), 409);
    assert_eq!(stack.request(&ended, "late").await.status(), 403);

    // Closed early: nobody is admitted, nothing changes it, closing again is harmless.
    assert_eq!(stack.request(&open, "first").await.status(), 202);
    let closed: Value = stack.close_campaign(&open).await.json().await.unwrap();
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
    assert_eq!(stack.close_campaign(&open).await.status(), 200);
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

    assert_eq!(stack.close_campaign(&other).await.status(), 200);
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

async fn admin_get(stack: &Stack, path: &str, token: &str) -> reqwest::Response {
    stack
        .http
        .get(format!("{}{path}", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Every id of the list `path` (with its own query), following `next_cursor` page by page.
async fn all_pages(stack: &Stack, path: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let response = admin_get(stack, &page_path, &stack.admin_token()).await;
        assert_eq!(response.status(), 200, "{page_path}");
        let page: Value = response.json().await.unwrap();
        pages += 1;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_campaigns_by_status_newest_first_in_pages() {
    let stack = Stack::ingress_only().await;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(stack.open_campaign(5, 1).await);
    }
    let scheduled = stack
        .campaign_with_window(5, 1, now + hour, now + 2 * hour)
        .await;
    let ended = stack
        .campaign_with_window(5, 1, now - 2 * hour, now - hour)
        .await;
    let closed = stack.open_campaign(5, 1).await;
    assert_eq!(stack.close_campaign(&closed).await.status(), 200);

    let newest_first = |mut ids: Vec<String>| {
        ids.reverse();
        ids
    };
    let (listed, pages) = all_pages(&stack, "/v1/admin/campaigns?status=open&limit=2").await;
    assert_eq!((listed, pages), (newest_first(open.clone()), 2));
    for (status, expected) in [
        ("scheduled", &scheduled),
        ("ended", &ended),
        ("closed", &closed),
    ] {
        let (listed, _) = all_pages(&stack, &format!("/v1/admin/campaigns?status={status}")).await;
        assert_eq!(listed, vec![expected.clone()], "{status}");
    }
    let mut everything = open.clone();
    everything.extend([scheduled, ended, closed]);
    let (listed, pages) = all_pages(&stack, "/v1/admin/campaigns?limit=3").await;
    assert_eq!((listed, pages), (newest_first(everything), 2));

    // Items carry the operator view's figures.
    let page: Value = admin_get(&stack, "/v1/admin/campaigns?limit=1", &stack.admin_token())
        .await
        .json()
        .await
        .unwrap();
    let item = &page["items"][0];
    assert_eq!(
        (
            &item["total_stock"],
            &item["remaining"],
            &item["issued"],
            &item["rejected"]
        ),
        (&json!(5), &json!(5), &json!(0), &json!(0))
    );

    for bad in ["?status=done", "?limit=0", "?limit=x", "?cursor=nope"] {
        let response = admin_get(
            &stack,
            &format!("/v1/admin/campaigns{bad}"),
            &stack.admin_token(),
        )
        .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let user = admin_get(
        &stack,
        "/v1/admin/campaigns",
        &testkit::token("u", None, 600),
    )
    .await;
    assert_eq!(user.status(), 403);
    let anonymous = stack
        .http
        .get(format!("{}/v1/admin/campaigns", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// The operator view follows the pipeline: the group's lag grows while no consumer runs and
/// falls to zero once one has persisted everything; released and rejected start at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_view_shows_the_consumer_lag() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(10, 1).await;
    for n in 0..4 {
        assert_eq!(
            stack.request(&campaign, &format!("lag-{n}")).await.status(),
            202
        );
    }
    let lagging = testkit::eventually(Duration::from_secs(20), "a lag of 4", || async {
        let view = stack.admin_campaign(&campaign).await;
        (view["consumer_lag"] == 4).then_some(view)
    })
    .await;
    assert_eq!(
        (
            &lagging["accepted"],
            &lagging["issued"],
            &lagging["released"],
            &lagging["rejected"]
        ),
        (&json!(4), &json!(0), &json!(0), &json!(0))
    );

    let persister = consumer::Persister::build(crate::support::consumer_config(&stack.fixture))
        .expect("consumer starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(persister.run(async {
        let _ = stopped.await;
    }));
    stack.fixture.wait_for_coupons(&campaign, 4).await;
    let caught_up = testkit::eventually(Duration::from_secs(20), "no lag", || async {
        let view = stack.admin_campaign(&campaign).await;
        (view["consumer_lag"] == 0).then_some(view)
    })
    .await;
    assert_eq!(caught_up["issued"], 4);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
}
