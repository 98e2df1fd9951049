//! The ingress on one request thread (`INGRESS_WORKER_THREADS=1`, also the default on a single
//! CPU): the current-thread scheduler serves a burst, persists every 202 and keeps the ledger
//! equal to the gate, like the multi-threaded one.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use testkit::{World, users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_thread_serves_a_burst() {
    let world = World::start_with(
        "one-thread",
        vec![("INGRESS_WORKER_THREADS", "1".to_owned())],
    )
    .await;
    let campaign = world.open_campaign(150, 1).await;
    let answers = world
        .burst(
            &campaign,
            users("t", 0..250),
            32,
            Arc::new(AtomicUsize::new(0)),
        )
        .await;
    let count = |status| answers.iter().filter(|a| a.status == status).count();
    assert_eq!((count(202), count(410)), (150, 100), "every answer exact");
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons, 150);
    let log = std::fs::read_to_string(world.log_path("ingress")).unwrap();
    let start = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == "ingress starting")
        .expect("the start line");
    assert_eq!(start["workers"], 1, "one request thread: {start}");
    assert!(!log.contains("panicked"), "the ingress ran cleanly: {log}");
}
