//! Operating the services: metrics after a burst, JSON logs, graceful shutdown on SIGTERM,
//! configuration errors, one trace across the services, and the demo burst. The services run
//! as real processes (`testkit::World`).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde_json::Value;

use testkit::{World, after, users, workspace_bin};

mod config;
mod metrics;
mod otlp;
mod promql;

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

/// One trace spans the services: the client's `traceparent` is the parent of the ingress's
/// request span, whose produce span travels in the Kafka headers and becomes the parent of the
/// consumer's batch span, whose PostgreSQL span is its child; the outbox relay continues the
/// produce span when it publishes `coupon.issued`. Exported over OTLP/HTTP (JSON) to a receiver
/// in this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_http_kafka_and_the_ledger() {
    let collector = otlp::Collector::start().await;
    let world = World::start_with(
        "traces",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            // The consumer's per-batch line is at debug.
            ("RUST_LOG", "info,consumer=debug".to_owned()),
        ],
    )
    .await;
    let campaign = world.open_campaign(10, 1).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = world
        .http
        .post(format!("{}/v1/campaigns/{campaign}/issuances", world.base))
        .bearer_auth(testkit::token("traced-user", None, 3600))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    world
        .fixture
        .wait_for_rows(1, "the traced issuance persisted")
        .await;

    let spans = testkit::eventually(Duration::from_secs(30), "the whole trace", || async {
        let spans: Vec<otlp::Span> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        [
            "http.request",
            "redis.reserve",
            "kafka.produce",
            "consumer.batch",
            "postgres.write_batch",
            "relay.publish",
        ]
        .iter()
        .all(|n| names.contains(n))
        .then_some(spans)
    })
    .await;
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let request = find("http.request");
    let produce = find("kafka.produce");
    let batch = find("consumer.batch");
    assert_eq!(request.service, "coupon-ingress");
    assert_eq!(
        request.parent_span_id, client_span,
        "the client's span is the parent"
    );
    assert_eq!(find("redis.reserve").parent_span_id, request.span_id);
    assert_eq!(produce.parent_span_id, request.span_id);
    assert_eq!(batch.service, "coupon-consumer");
    assert_eq!(
        batch.parent_span_id, produce.span_id,
        "the Kafka hop keeps the parent"
    );
    assert!(batch.links.is_empty(), "one record: a parent, no links");
    assert_eq!(find("postgres.write_batch").parent_span_id, batch.span_id);
    let relay = find("relay.publish");
    assert_eq!(relay.service, "coupon-consumer");
    assert_eq!(
        relay.parent_span_id, produce.span_id,
        "the outbox carries the trace on"
    );
    let issued = world.fixture.read_topic(&world.fixture.issued_topic).await;
    let carried = issued[0].header("traceparent").unwrap_or_default();
    assert!(
        carried.contains(trace_id) && carried.contains(&relay.span_id),
        "{carried}"
    );

    // Log lines inside a traced span carry its trace id.
    let log = std::fs::read_to_string(world.log_path("consumer")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("batch committed"))
        .expect("the consumer logged the batch");
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["span"]["trace_id"], trace_id, "{line}");
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
        "events      opened, sold-out on ",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
}
