//! Operating the services: metrics after a burst, JSON logs, graceful shutdown on SIGTERM, and
//! configuration errors. The services run as real processes (the fault suite's `World`).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde_json::Value;

use crate::faults::{World, after, users};

mod otlp;
use crate::support::procs::workspace_bin;

/// The value of one sample in a Prometheus text exposition: the line of metric `name` whose
/// labels include every pair in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let pairs: Vec<(&str, &str)> = rest
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|wanted| pairs.contains(wanted))
                .then(|| value.parse().ok())
                .flatten()
        })
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.contains("openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

/// Every line of a process log is one JSON object with a timestamp, a level and a message.
fn assert_json_log(world: &World, process: &str) -> usize {
    let text = std::fs::read_to_string(world.log_path(process)).unwrap();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{process} log line is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message"] {
            assert!(
                entry.get(field).is_some(),
                "{process} log line without {field}: {line}"
            );
        }
        lines += 1;
    }
    assert!(lines > 0, "{process} logged nothing");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_burst_and_logs_are_json() {
    let world = World::start("metrics").await;
    let campaign = world.open_campaign(30).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world.burst(&campaign, users("m", 0..50), 8, progress).await;
    let count = |s: u16| answers.iter().filter(|a| a.status == s).count() as f64;
    assert_eq!(count(202), 30.0);
    world.wait_for_rows(30, "the burst persisted").await;

    let ingress = scrape(&world.http, &format!("{}/metrics", world.base())).await;
    let at = |name: &str, labels: &[(&str, &str)]| {
        sample(&ingress, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}:\n{ingress}"))
    };
    assert_eq!(
        at("coupon_reservations_total", &[("outcome", "accepted")]),
        30.0
    );
    assert_eq!(
        at("coupon_reservations_total", &[("outcome", "sold_out")]),
        20.0
    );
    assert_eq!(
        at(
            "coupon_http_requests_total",
            &[("route", "issuances"), ("status", "202")]
        ),
        30.0
    );
    assert_eq!(
        at(
            "coupon_http_requests_total",
            &[("route", "issuances"), ("status", "410")]
        ),
        count(410)
    );
    assert_eq!(
        at(
            "coupon_http_request_duration_seconds_count",
            &[("route", "issuances")]
        ),
        50.0
    );
    assert_eq!(
        at("coupon_kafka_produce_total", &[("result", "persisted")]),
        30.0
    );
    assert_eq!(at("coupon_kafka_produce_duration_seconds_count", &[]), 30.0);
    assert_eq!(
        at("coupon_redis_duration_seconds_count", &[("op", "reserve")]),
        50.0
    );
    assert!(at("process_resident_memory_bytes", &[]) > 1e6);
    assert!(
        at("coupon_open_connections", &[]) >= 1.0,
        "this scrape's own connection"
    );
    assert!(at("coupon_producer_queue_messages", &[]) >= 0.0);

    let consumer_metrics = format!("http://127.0.0.1:{}/metrics", world.consumer_ops_port);
    let consumer = testkit::eventually(Duration::from_secs(30), "consumer metrics", || async {
        let text = scrape(&world.http, &consumer_metrics).await;
        let lag_known = sample(&text, "coupon_consumer_lag_messages", &[]).is_some();
        (sample(&text, "coupon_coupons_issued_total", &[]) == Some(30.0) && lag_known)
            .then_some(text)
    })
    .await;
    let at = |name: &str, labels: &[(&str, &str)]| {
        sample(&consumer, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?}:\n{consumer}"))
    };
    assert!(at("coupon_consumer_batch_size_count", &[]) >= 1.0);
    assert_eq!(at("coupon_consumer_batch_size_sum", &[]), 30.0);
    assert!(at("coupon_consumer_commit_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(
        at(
            "coupon_issuances_rejected_total",
            &[("reason", "stock-exhausted")]
        ),
        0.0
    );
    assert_eq!(at("coupon_dead_letters_total", &[]), 0.0);
    let ready = world
        .http
        .get(format!(
            "http://127.0.0.1:{}/readyz",
            world.consumer_ops_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    assert!(
        at(
            "coupon_postgres_duration_seconds_count",
            &[("op", "commit")]
        ) >= 1.0
    );

    // Every series the shipped dashboard and alert rules query exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "helm/coupon-issuance/files/dashboard.json",
        "helm/coupon-issuance/files/prometheus-rules.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for name in metric_names(&text) {
            let exposed = |scrape: &str| {
                scrape.lines().any(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                })
            };
            assert!(
                exposed(&ingress) || exposed(&consumer),
                "{file} queries {name}, which neither service exposes"
            );
        }
    }

    assert_json_log(&world, "ingress");
    assert_json_log(&world, "consumer");
}

/// Metric names (`coupon_…`, `process_…`) mentioned in a dashboard or rules file.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["coupon_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let boundary = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            if boundary && end > prefix.len() {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end.max(1)..];
        }
    }
    names
}

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
    let campaign = world.open_campaign(5_000).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut ingress = world.ingress.take().unwrap();
    let readyz = format!("{}/readyz", world.base());
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
    let report = world.check(&campaign, &answers, false).await;
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

fn run_with(binary: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(workspace_bin(binary));
    for (name, _) in std::env::vars() {
        if name.starts_with("JWT_") || name.starts_with("KAFKA_") || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn invalid_configuration_is_refused_with_every_problem_listed() {
    let output = run_with(
        "coupon-ingress",
        &[
            ("JWT_LEEWAY_SECS", "99"),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "5"),
            ("SHUTDOWN_TIMEOUT_MS", "0"),
            ("RUST_LOG", "info,[[["),
            ("JWT_HS256_SECRET_FILE", "/nonexistent/coupon-secret"),
            (
                "DATABASE_URL",
                "postgres://app:hunter2-secret@127.0.0.1/coupon",
            ),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "JWT_LEEWAY_SECS",
        "KAFKA_MESSAGE_TIMEOUT_MS",
        "SHUTDOWN_TIMEOUT_MS",
        "RUST_LOG",
        "JWT_HS256_SECRET_FILE",
    ] {
        assert!(stderr.contains(setting), "{setting} not named:\n{stderr}");
    }
    assert!(
        !stderr.contains("hunter2"),
        "a secret was printed:\n{stderr}"
    );

    let output = run_with(
        "coupon-consumer",
        &[
            ("CONSUMER_BATCH_SIZE", "0"),
            ("KAFKA_SESSION_TIMEOUT_MS", "20000"),
            ("KAFKA_MAX_POLL_INTERVAL_MS", "6000"),
            ("DATABASE_POOL_SIZE", "0"),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "CONSUMER_BATCH_SIZE",
        "KAFKA_SESSION_TIMEOUT_MS",
        "DATABASE_POOL_SIZE",
    ] {
        assert!(stderr.contains(setting), "{setting} not named:\n{stderr}");
    }
}

#[test]
fn help_documents_every_setting() {
    for (binary, settings) in [
        (
            "coupon-ingress",
            &[
                "INGRESS_LISTEN",
                "REDIS_URL",
                "KAFKA_MESSAGE_TIMEOUT_MS",
                "JWT_JWKS_FILE",
                "SHUTDOWN_DELAY_MS",
                "SHUTDOWN_TIMEOUT_MS",
                "LOG_FORMAT",
                "RUST_LOG",
                "COUPON_CONFIG_FILE",
            ][..],
        ),
        (
            "coupon-consumer",
            &[
                "CONSUMER_GROUP",
                "CONSUMER_HTTP_LISTEN",
                "KAFKA_STATISTICS_INTERVAL_MS",
                "SHUTDOWN_TIMEOUT_MS",
                "COUPON_CONFIG_FILE",
            ][..],
        ),
    ] {
        let output = run_with(
            binary,
            &[("JWT_HS256_SECRET", "do-not-print-me")],
            &["--help"],
        );
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        for setting in settings {
            assert!(help.contains(setting), "{binary} --help lacks {setting}");
        }
        assert!(!help.contains("do-not-print-me"), "--help printed a secret");
    }
}

/// A config file and a secret mounted as a file configure the ingress as the environment would.
#[test]
fn a_config_file_and_secret_files_are_read() {
    let dir = std::env::temp_dir().join(format!("coupon-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("jwt-secret");
    std::fs::write(&secret, "short\n").unwrap();
    let file = dir.join("ingress.env");
    std::fs::write(
        &file,
        format!(
            "# ingress settings\nJWT_LEEWAY_SECS=45\nJWT_HS256_SECRET_FILE={}\n",
            secret.display()
        ),
    )
    .unwrap();
    let output = run_with(
        "coupon-ingress",
        &[("COUPON_CONFIG_FILE", file.to_str().unwrap())],
        &[],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Both values were read: each fails its own check, named without its value.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("JWT_LEEWAY_SECS must be at most 30"),
        "{stderr}"
    );
    assert!(
        stderr.contains("JWT_HS256_SECRET must be at least 8 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("short"), "{stderr}");
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
    let campaign = world.open_campaign(10).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = world
        .http
        .post(format!(
            "{}/v1/campaigns/{campaign}/issuances",
            world.base()
        ))
        .bearer_auth(testkit::token("traced-user", None, 3600))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    world
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
    let stack = crate::support::Stack::pipeline().await;
    let bin = crate::support::procs::workspace_bin("couponctl");
    let fixture = &stack.fixture;
    let base = stack.base.clone();
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
