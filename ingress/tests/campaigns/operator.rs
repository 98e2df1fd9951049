//! Operator changes reach the gate in the ledger's order and are never lost: racing changes and
//! a late gate call end with the gate equal to the ledger, a change whose gate call never came
//! is re-applied by the sweeper, Redis down when a change starts changes nothing, and a close
//! takes the instant the gate stopped admitting.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use gate::Admission;
use gate::ledger::Settings;
use schema::ids::IssuanceId;
use serde_json::json;
use time::OffsetDateTime;

use testkit::gate_copy;

use crate::support::Stack;

/// The ledger's settings of a campaign.
async fn ledger(stack: &Stack, campaign: &str) -> Settings {
    gate_copy::ledger(&stack.fixture.db().await, campaign).await
}

/// The gate's meta hash of a campaign.
async fn meta(stack: &Stack, campaign: &str) -> HashMap<String, String> {
    gate_copy::meta(&testkit::redis_url(), &stack.fixture.redis_prefix, campaign).await
}

/// The gate's copy of the settings.
async fn gate_copy(stack: &Stack, campaign: &str) -> Vec<String> {
    gate_copy::settings(&meta(stack, campaign).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_changes_and_a_late_gate_call_end_with_the_gate_equal_to_the_ledger() {
    let stack = Stack::ingress_only().await;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let campaign = stack
        .campaign_with_window(10, 1, now + hour, now + 2 * hour)
        .await;
    // Changes racing each other (limits, which hold the gate, and stock, which does not): each
    // one commits on the one before (the row lock).
    let changes = (0..8u32).map(|n| {
        let stack = &stack;
        let campaign = &campaign;
        async move {
            let body = if n % 2 == 0 {
                json!({"per_user_limit": 1 + n % 3})
            } else {
                json!({"total_stock": 20})
            };
            stack.patch_campaign(campaign, &body).await.status()
        }
    });
    let statuses = futures_util::future::join_all(changes).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let raced = ledger(&stack, &campaign).await;
    assert_eq!(raced.version, 1 + 8, "every change has its own version");
    assert_eq!(raced.total_stock, 20);
    assert_eq!(
        gate_copy(&stack, &campaign).await,
        gate_copy::as_meta(&raced)
    );
    assert!(!meta(&stack, &campaign).await.contains_key("hold"));

    // Change A (limit 3) commits, then change B (limit 1); A's gate call arrives after B's.
    let a = stack
        .patch_campaign(&campaign, &json!({"per_user_limit": 3}))
        .await;
    assert_eq!(a.status(), 200);
    let after_a = ledger(&stack, &campaign).await;
    let b = stack
        .patch_campaign(&campaign, &json!({"per_user_limit": 1}))
        .await;
    assert_eq!(b.status(), 200);
    stack.app.gate.adjust(&after_a).await.unwrap();
    let after_b = ledger(&stack, &campaign).await;
    assert_eq!(after_b.per_user_limit, 1);
    assert_eq!(
        gate_copy(&stack, &campaign).await,
        gate_copy::as_meta(&after_b)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_gate_missed_is_reapplied_by_the_sweeper() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    assert_eq!(stack.request(&campaign, "before").await.status(), 202);
    // A change held the gate and committed in the ledger, then its process died before its
    // gate call: the gate has neither the stock nor the close of the ledger.
    let before = ledger(&stack, &campaign).await;
    stack
        .app
        .gate
        .hold(&before.id, before.version + 1, before.starts_ms)
        .await
        .unwrap();
    let db = stack.fixture.db().await;
    db.execute(
        "UPDATE campaigns SET total_stock = 9, settings_version = settings_version + 1
         WHERE id = $1",
        &[&before.id.0],
    )
    .await
    .unwrap();
    let committed = ledger(&stack, &campaign).await;
    // Within a reconcile round the sweeper applies it, which lifts the hold.
    let copy = testkit::eventually(
        Duration::from_secs(5),
        "the sweeper to re-apply the change",
        || async {
            let meta = meta(&stack, &campaign).await;
            (!meta.contains_key("hold")).then_some(())?;
            let copy = gate_copy(&stack, &campaign).await;
            (copy == gate_copy::as_meta(&committed)).then_some(copy)
        },
    )
    .await;
    assert_eq!(copy[0], "9");
    assert_eq!(meta(&stack, &campaign).await["remaining"], "8");
    assert_eq!(stack.request(&campaign, "after").await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_when_a_change_starts_changes_nothing() {
    let proxy = testkit::FaultProxy::start(("127.0.0.1".to_owned(), redis_port())).await;
    let redis_url = format!("--redis-url=redis://127.0.0.1:{}", proxy.port);
    let stack = Stack::ingress_with(&[redis_url.as_str(), "--redis-timeout-ms=1000"]).await;
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let campaign = stack
        .campaign_with_window(5, 2, now + hour, now + 2 * hour)
        .await;
    let before = ledger(&stack, &campaign).await;
    proxy.fail();
    // A change that narrows admissions needs the gate's hold first: refused, nothing changed.
    for body in [json!({"per_user_limit": 1}), json!({"closed": true})] {
        let refused = stack.patch_campaign(&campaign, &body).await;
        assert_eq!(refused.status(), 503, "{body}");
        assert_eq!(ledger(&stack, &campaign).await, before, "{body}");
    }
    // More stock needs no hold: saved, and the gate takes it once Redis is back.
    let saved = stack
        .patch_campaign(&campaign, &json!({"total_stock": 8}))
        .await;
    assert_eq!(saved.status(), 503);
    let grown = ledger(&stack, &campaign).await;
    assert_eq!((grown.total_stock, grown.version), (8, before.version + 1));
    proxy.restore();
    testkit::eventually(
        Duration::from_secs(10),
        "the sweeper to apply the stock",
        || async {
            (gate_copy(&stack, &campaign).await == gate_copy::as_meta(&grown)).then_some(())
        },
    )
    .await;
    let limited = stack
        .patch_campaign(&campaign, &json!({"per_user_limit": 1}))
        .await;
    assert_eq!(limited.status(), 200);
    let after = ledger(&stack, &campaign).await;
    assert_eq!(
        (after.per_user_limit, after.version),
        (1, before.version + 2)
    );
    assert_eq!(
        gate_copy(&stack, &campaign).await,
        gate_copy::as_meta(&after)
    );
}

fn redis_port() -> u16 {
    let url: redis::ConnectionInfo =
        redis::IntoConnectionInfo::into_connection_info(testkit::redis_url().as_str()).unwrap();
    match url.addr() {
        redis::ConnectionAddr::Tcp(_, port) => *port,
        other => panic!("a plaintext test Redis, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_takes_the_instant_the_gate_stopped_admitting() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(1_000, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let users = testkit::users("c", 0..400);
    let (answers, (before_ms, after_ms)) =
        tokio::join!(stack.burst(&campaign, users, 24, progress.clone()), async {
            testkit::after(&progress, 60).await;
            let before_ms = stack.app.gate.now_ms().await.unwrap();
            let closed = stack.close_campaign(&campaign).await;
            assert_eq!(closed.status(), 200);
            let after_ms = stack.app.gate.now_ms().await.unwrap();
            (before_ms, after_ms)
        });
    let closed = ledger(&stack, &campaign).await;
    assert!(closed.closed);
    let db = stack.fixture.db().await;
    let closed_at: OffsetDateTime = db
        .query_one(
            "SELECT closed_at FROM campaigns WHERE id = $1",
            &[&closed.id.0],
        )
        .await
        .unwrap()
        .get(0);
    let closed_ms = schema::time::unix_ms(closed_at);
    assert_eq!(
        closed_at,
        schema::time::from_unix_ms(closed_ms).unwrap(),
        "a whole millisecond of the Redis clock"
    );
    assert!(
        before_ms < closed_ms && closed_ms <= after_ms + 1,
        "{before_ms} < {closed_ms} <= {after_ms} + 1"
    );
    // Every admission precedes the close: the ledger refuses none of them.
    let mut admitted = 0;
    for answer in answers.iter().filter(|a| a.status == 202) {
        let issuance: IssuanceId = answer.issuance_id.as_deref().unwrap().parse().unwrap();
        let Some(Admission::Pending(admission)) =
            stack.app.gate.admission(&issuance).await.unwrap()
        else {
            panic!("the admission of {issuance} is recorded");
        };
        assert!(
            admission.requested_ms < closed_ms,
            "admitted at {} after the close at {closed_ms}",
            admission.requested_ms
        );
        admitted += 1;
    }
    assert!(admitted >= 60, "admitted {admitted} before the close");
    assert!(
        answers.iter().all(|a| [202, 403, 503].contains(&a.status)),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(stack.request(&campaign, "late").await.status(), 403);
    assert_eq!(
        gate_copy(&stack, &campaign).await,
        gate_copy::as_meta(&closed)
    );
}
