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

/// The API listener asks for an accept queue as long as the host allows (`net.core.somaxconn`),
/// not the 128 of a plain bind (it asks for 65,535): the queue `ss` reports for the
/// listening socket is the host's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_listener_queues_as_many_connections_as_the_host_allows() {
    let world = World::start("backlog").await;
    let port = world.api.base.rsplit(':').next().unwrap().to_owned();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ss = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2)");
    let listing = String::from_utf8_lossy(&ss.stdout);
    // `LISTEN <queued> <backlog> <local> <peer>`: for a listening socket the third column is
    // the accept queue's length.
    let backlog: u32 = listing
        .split_whitespace()
        .nth(2)
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("a listening socket on {port}: {listing:?}"));
    assert_eq!(
        backlog,
        somaxconn.min(65_535),
        "the accept queue of {listing:?}"
    );
}
