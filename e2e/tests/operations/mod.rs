//! Operating the services: metrics after a burst, JSON logs, graceful shutdown on SIGTERM,
//! configuration errors, one trace across the services, and the demo burst. The services run
//! as real processes (`testkit::World`).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use testkit::{World, after, users, workspace_bin};

mod config;
mod metrics;
mod otlp;
mod promql;
mod republish;
mod runtime;

/// SIGTERM mid-burst: readiness fails at once while requests are still served for the delay,
/// then the listener closes, in-flight requests finish, and the process exits 0. Every 202 is
/// in the ledger, and the journal is empty without another ingress to sweep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_loses_no_accepted_request_and_exits_zero() {
    let mut world = World::start_with(
        "sigterm",
        vec![
            ("SHUTDOWN_DELAY_MS", "1500".to_owned()),
            ("SHUTDOWN_TIMEOUT_MS", "10000".to_owned()),
        ],
    )
    .await;
    let campaign = world.open_campaign(5_000, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut ingress = world.ingress.take().unwrap();
    let readyz = format!("{}/readyz", world.base);
    let (answers, (ready_status, served_after_signal, exit)) = tokio::join!(
        world.burst(&campaign, users("t", 0..1_500), 16, progress.clone()),
        async {
            after(&progress, 100).await;
            ingress.signal("TERM");
            let signalled_at = progress.load(std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ready = world
                .http
                .get(&readyz)
                .send()
                .await
                .map(|r| r.status().as_u16());
            let served = progress.load(std::sync::atomic::Ordering::SeqCst) - signalled_at;
            let exit = ingress.exited_within(Duration::from_secs(20)).await;
            (ready, served, exit)
        }
    );
    assert_eq!(
        ready_status.ok(),
        Some(503),
        "not ready once SIGTERM arrived"
    );
    assert!(
        served_after_signal > 0,
        "requests are served during the delay"
    );
    let exit = exit.expect("the ingress exits within the shutdown bound");
    assert!(exit.success(), "exit status {exit:?}");
    let statuses: std::collections::BTreeSet<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.iter().all(|s| [202, 0].contains(s)),
        "only 202 or a refused connection after close: {statuses:?}"
    );
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let report = world.check(&campaign, &answers).await;
    assert_eq!(report.coupons as usize, accepted);

    // The consumer stops as cleanly: not ready, offsets committed, group left, status 0.
    let mut consumer = world.consumer.take().unwrap();
    consumer.signal("TERM");
    let exit = consumer
        .exited_within(Duration::from_secs(20))
        .await
        .expect("the consumer exits within the shutdown bound");
    assert!(exit.success(), "exit status {exit:?}");
}

/// The main job's burst (`couponctl demo`, what `dev/demo` runs) against the pipeline: exactly
/// the stock accepted and persisted, and the campaign's events shown; it exits 0 only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_burst_reports_a_clean_drop() {
    let world = World::start("demo").await;
    let bin = workspace_bin("couponctl");
    let fixture = &world.fixture;
    let base = world.base.clone();
    let (brokers, events) = (fixture.brokers.clone(), fixture.events_topic.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["demo", "--stock", "60", "--users", "200", "--repeats", "20"])
            .args(["--concurrency", "16", "--base-url", &base])
            .env("JWT_HS256_SECRET", testkit::HS256_SECRET)
            .env("KAFKA_BROKERS", brokers)
            .env("TOPIC_CAMPAIGN_EVENTS", events)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "accepted    60\n",
        "other       0\n",
        "persisted   60 rows",
        "outcome     60 of 60 accepted read `issued` by long-poll",
        "events      opened, sold-out on ",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
}
