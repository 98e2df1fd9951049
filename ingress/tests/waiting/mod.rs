//! Long-polls on an issuance's outcome (`GET /v1/issuances/{id}` with `Prefer: wait=N`), woken
//! by the consumer's notification at its commit through the ingress's one `LISTEN`, on the real
//! Redis, Kafka and PostgreSQL. Waits are long and answers are timed: an answer well before the
//! wait's end can only come from a wake-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Stack;

/// One long-poll's answer.
struct Polled {
    status: u16,
    applied: Option<String>,
    body: Value,
    took: Duration,
}

async fn long_poll(stack: &Stack, issuance: &str, user: &str, prefer: &str) -> Polled {
    let started = Instant::now();
    let response = stack.status_preferring(issuance, user, prefer).await;
    let status = response.status().as_u16();
    let applied = response
        .headers()
        .get("preference-applied")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap();
    Polled {
        status,
        applied,
        body,
        took: started.elapsed(),
    }
}

async fn accepted(stack: &Stack, campaign: &str, user: &str) -> String {
    let response = stack.request(campaign, user).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["issuance_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_after_the_202_returns_the_coupon_in_one_call() {
    let stack = Stack::pipeline().await;
    let campaign = stack.open_campaign(5, 1).await;
    let issuance = accepted(&stack, &campaign, "alice").await;

    let polled = long_poll(&stack, &issuance, "alice", "wait=30").await;
    assert_eq!(polled.status, 200, "{}", polled.body);
    assert_eq!(polled.body["status"], "issued", "{}", polled.body);
    assert_eq!(polled.body["coupon"]["seq"], 1);
    assert_eq!(polled.applied.as_deref(), Some("wait=30"));
    assert!(polled.took < Duration::from_secs(20), "{:?}", polled.took);

    // Settled already: answered at once, the preference honoured.
    let again = long_poll(&stack, &issuance, "alice", "respond-async, Wait=100").await;
    assert_eq!(again.body["status"], "issued");
    assert_eq!(again.applied.as_deref(), Some("wait=30"), "capped to 30");
    assert!(again.took < Duration::from_secs(2), "{:?}", again.took);
    let metrics = stack.http.get(format!("{}/metrics", stack.ops)).send();
    let metrics = metrics.await.unwrap().text().await.unwrap();
    assert!(metrics.contains("coupon_issuance_waiters 0"), "{metrics}");
    assert!(
        metrics.contains("route=\"issuance_wait\""),
        "long-polls have a route label of their own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_each_learn_their_coupon_with_one_get() {
    let stack = Stack::start(crate::support::Options {
        partitions: 3,
        consumer: true,
        extra: vec!["--database-pool-size=16".to_owned()],
    })
    .await;
    let campaign = stack.open_campaign(300, 1).await;
    let gets = AtomicUsize::new(0);
    let started = Instant::now();
    let clients = (0..300).map(|n| {
        let (stack, campaign, gets) = (&stack, &campaign, &gets);
        async move {
            let user = format!("client-{n}");
            let issuance = accepted(stack, campaign, &user).await;
            gets.fetch_add(1, Ordering::Relaxed);
            long_poll(stack, &issuance, &user, "wait=30").await
        }
    });
    let answers = futures_util::future::join_all(clients).await;
    let took = started.elapsed();
    assert_eq!(gets.load(Ordering::Relaxed), 300, "one GET per client");
    for polled in &answers {
        assert_eq!(polled.body["status"], "issued", "{}", polled.body);
        assert_eq!(polled.applied.as_deref(), Some("wait=30"));
    }
    let slowest = answers.iter().map(|p| p.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(25),
        "woken, not timed out: slowest {slowest:?}, all {took:?}"
    );
    stack.fixture.wait_for_coupons(&campaign, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_id_is_404_at_once_and_an_unsettled_one_answers_accepted_after_the_wait() {
    // No consumer: the issuance stays accepted. Waits capped to 2 s here.
    let stack = Stack::ingress_with(&["--issuance-wait-max-secs=2"]).await;
    let campaign = stack.open_campaign(5, 1).await;
    let issuance = accepted(&stack, &campaign, "alice").await;

    let foreign = long_poll(&stack, &issuance, "mallory", "wait=2").await;
    assert_eq!(foreign.status, 404);
    assert_eq!(foreign.applied, None);
    assert!(foreign.took < Duration::from_secs(1), "{:?}", foreign.took);

    let polled = long_poll(&stack, &issuance, "alice", "wait=60").await;
    assert_eq!(polled.status, 200);
    assert_eq!(polled.body["status"], "accepted");
    assert_eq!(polled.applied.as_deref(), Some("wait=2"), "capped");
    assert!(
        (Duration::from_millis(1_900)..Duration::from_secs(5)).contains(&polled.took),
        "{:?}",
        polled.took
    );

    // No valid wait: the plain read, at once, without the header.
    for prefer in ["wait=-1", "wait=soon", "respond-async"] {
        let plain = long_poll(&stack, &issuance, "alice", prefer).await;
        assert_eq!((plain.status, plain.applied), (200, None), "{prefer}");
        assert!(plain.took < Duration::from_secs(1), "{prefer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_long_polls_hold_no_issuance_permit_and_have_a_budget_of_their_own() {
    let stack = Stack::ingress_with(&["--max-in-flight=1", "--issuance-waiters-max=1"]).await;
    let campaign = stack.open_campaign(5, 1).await;
    let issuance = accepted(&stack, &campaign, "alice").await;
    let (parked, others) = tokio::join!(long_poll(&stack, &issuance, "alice", "wait=3"), async {
        testkit::eventually(Duration::from_secs(5), "a parked waiter", || async {
            (stack.app.outcomes.parked() == 1).then_some(())
        })
        .await;
        // The one in-flight permit is free: issuance goes on.
        let bob = stack.request(&campaign, "bob").await.status();
        // The waiters' budget is spent: answered at once, no preference applied.
        let over = long_poll(&stack, &issuance, "alice", "wait=3").await;
        (bob, over)
    });
    let (bob, over) = others;
    assert_eq!(bob, 202);
    assert_eq!((over.status, over.applied.as_deref()), (200, None));
    assert!(over.took < Duration::from_secs(1), "{:?}", over.took);
    assert_eq!(parked.applied.as_deref(), Some("wait=3"));
    assert_eq!(stack.app.outcomes.parked(), 0, "nothing left behind");
}

/// The listener's connection is killed while waiters are parked: it reconnects, listens again,
/// and the consumer started afterwards still wakes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_long_polls_survive_the_loss_of_the_listeners_connection() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(20, 1).await;
    let mut issuances = Vec::new();
    for n in 0..5 {
        let user = format!("user-{n}");
        issuances.push((accepted(&stack, &campaign, &user).await, user));
    }
    let db = stack.fixture.db().await;
    let database = stack.fixture.database.clone();
    let listener = || async {
        let rows = db
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = $1 AND query = 'LISTEN coupon_outcomes'",
                &[&database],
            )
            .await
            .unwrap();
        rows.first().map(|row| row.get::<_, i32>(0))
    };
    let first = testkit::eventually(Duration::from_secs(10), "the listener", listener).await;

    let polls = issuances
        .iter()
        .map(|(issuance, user)| long_poll(&stack, issuance, user, "wait=30"));
    let polls = futures_util::future::join_all(polls);
    let disrupt_then_consume = async {
        testkit::eventually(Duration::from_secs(5), "parked waiters", || async {
            (stack.app.outcomes.parked() == 5).then_some(())
        })
        .await;
        let killed: bool = db
            .query_one("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap()
            .get(0);
        assert!(killed);
        testkit::eventually(Duration::from_secs(10), "a new listener", || async {
            listener().await.filter(|pid| *pid != first)
        })
        .await;
        // Woken once by the reconnection, read again, still accepted: still parked.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stack.app.outcomes.parked(), 5);
        let config = crate::support::consumer_config(&stack.fixture);
        let persister = consumer::Persister::build(config).expect("consumer starts");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let consumer = tokio::spawn(persister.run(async {
            let _ = stopped.await;
        }));
        (stop, consumer)
    };
    let (answers, (stop, consumer)) = tokio::join!(polls, disrupt_then_consume);
    let _ = stop.send(());
    let _ = consumer.await;
    for polled in &answers {
        assert_eq!(polled.body["status"], "issued", "{}", polled.body);
        assert!(polled.took < Duration::from_secs(25), "{:?}", polled.took);
    }
    let metrics = stack.http.get(format!("{}/metrics", stack.ops)).send();
    let metrics = metrics.await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("coupon_outcome_listener_reconnects_total 1"),
        "{metrics}"
    );
}
