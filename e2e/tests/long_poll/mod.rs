//! Long-polls (`GET /v1/issuances/{id}` with `Prefer: wait=N`) across real processes: the
//! consumer that feeds the wake-ups is killed and restarted while waiters are parked, and the
//! ingress is stopped with SIGTERM while they are. Waits are 30 s and answers are timed: one well
//! before the end of its wait was woken, not timed out.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Api, World};

/// One long-poll's answer.
struct Polled {
    status: u16,
    applied: Option<String>,
    body: Value,
    took: Duration,
}

async fn long_poll(api: &Api, issuance: &str, user: &str) -> Polled {
    let started = Instant::now();
    let response = api.status_preferring(issuance, user, "wait=30").await;
    let status = response.status().as_u16();
    let applied = response
        .headers()
        .get("preference-applied")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Polled {
        status,
        applied,
        body,
        took: started.elapsed(),
    }
}

/// The world's client, patient enough for a 30 s wait (the world's own gives up after 10 s).
fn patient(world: &World) -> Api {
    let mut api = world.api.clone();
    api.http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    api
}

/// A long-poll of 30 s per issuance, each on a task of its own.
fn park(world: &World, accepted: &[(String, String)]) -> Vec<tokio::task::JoinHandle<Polled>> {
    let api = patient(world);
    accepted
        .iter()
        .map(|(issuance, user)| {
            let (api, issuance, user) = (api.clone(), issuance.clone(), user.clone());
            tokio::spawn(async move { long_poll(&api, &issuance, &user).await })
        })
        .collect()
}

async fn answered(polls: Vec<tokio::task::JoinHandle<Polled>>) -> Vec<Polled> {
    let mut answers = Vec::new();
    for poll in polls {
        answers.push(poll.await.unwrap());
    }
    answers
}

/// Five issuances accepted while no consumer runs, as (issuance id, user).
async fn accepted_while_no_consumer(world: &mut World, campaign: &str) -> Vec<(String, String)> {
    world.consumer.take().unwrap().kill();
    let mut accepted = Vec::new();
    for n in 0..5 {
        let user = format!("waiter-{n}");
        let response = world.request(campaign, &user).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        accepted.push((body["issuance_id"].as_str().unwrap().to_owned(), user));
    }
    accepted
}

/// Waits until the ingress reports `n` parked long-polls.
async fn parked(world: &World, n: u32) {
    let metrics = format!("http://127.0.0.1:{}/metrics", world.ingress_ops_port);
    let want = format!("coupon_issuance_waiters {n}\n");
    testkit::eventually(Duration::from_secs(10), "parked long-polls", || async {
        let text = world
            .http
            .get(&metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(&want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_long_polls_are_woken_by_a_consumer_that_was_killed_and_restarted() {
    let mut world = World::start("long-poll-consumer").await;
    let campaign = world.open_campaign(10, 1).await;
    let accepted = accepted_while_no_consumer(&mut world, &campaign).await;
    let polls = park(&world, &accepted);
    parked(&world, 5).await;
    world.start_consumer();
    for polled in &answered(polls).await {
        assert_eq!(polled.status, 200);
        assert_eq!(polled.body["status"], "issued", "{}", polled.body);
        assert_eq!(polled.applied.as_deref(), Some("wait=30"));
        assert!(
            polled.took < Duration::from_secs(29),
            "woken, not timed out: {:?}",
            polled.took
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_parked_long_polls_early_with_an_answer() {
    let mut world = World::start_with(
        "long-poll-sigterm",
        vec![("SHUTDOWN_DELAY_MS", "1000".to_owned())],
    )
    .await;
    let campaign = world.open_campaign(10, 1).await;
    let accepted = accepted_while_no_consumer(&mut world, &campaign).await;
    let polls = park(&world, &accepted);
    parked(&world, 5).await;
    let mut ingress = world.ingress.take().unwrap();
    ingress.signal("TERM");
    let exit = ingress.exited_within(Duration::from_secs(20)).await;
    for polled in &answered(polls).await {
        assert_eq!(polled.status, 200);
        assert_eq!(polled.body["status"], "accepted", "{}", polled.body);
        assert_eq!(polled.applied.as_deref(), Some("wait=30"));
        assert!(
            polled.took < Duration::from_secs(15),
            "ended by the shutdown, not by the wait: {:?}",
            polled.took
        );
    }
    let exit = exit.expect("the ingress exits");
    assert!(exit.success(), "exit status {exit:?}");
}
