//! Metrics after a burst, read from both services' operations listeners (never the ingress's
//! public port), and the JSON logs they wrote.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde_json::Value;
use testkit::{World, users};

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
    let campaign = world.open_campaign(30, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let answers = world.burst(&campaign, users("m", 0..50), 8, progress).await;
    let count = |s: u16| answers.iter().filter(|a| a.status == s).count() as f64;
    assert_eq!(count(202), 30.0);
    world.fixture.wait_for_rows(30, "the burst persisted").await;

    let public = world
        .http
        .get(format!("{}/metrics", world.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "metrics on the public port");
    let ingress_ops = format!("http://127.0.0.1:{}", world.ingress_ops_port);
    let ingress = scrape(&world.http, &format!("{ingress_ops}/metrics")).await;
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
    let started_at = std::time::SystemTime::now();
    assert_process_series(&ingress, started_at);
    assert!(
        at("coupon_open_connections", &[]) >= 1.0,
        "the burst's keep-alive connections to the public port"
    );
    assert!(at("coupon_readiness_checks_total", &[]) >= 1.0);
    for dependency in ["redis", "kafka", "postgres"] {
        assert_eq!(
            at("coupon_dependency_up", &[("dependency", dependency)]),
            1.0,
            "{dependency}"
        );
    }
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
    assert_process_series(&consumer, started_at);
    // The ingress just served a burst: its CPU time has grown since the first scrape.
    let cpu = |text: &str| sample(text, "process_cpu_seconds_total", &[]).unwrap();
    let before = cpu(&ingress);
    testkit::eventually(
        Duration::from_secs(30),
        "the ingress's CPU time grows",
        || async {
            let busy = world.burst(&campaign, users("cpu", 0..200), 8, Arc::default());
            let _ = busy.await;
            let text = scrape(&world.http, &format!("{ingress_ops}/metrics")).await;
            (cpu(&text) > before).then_some(())
        },
    )
    .await;
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
    let ready = world
        .http
        .get(format!("{ingress_ops}/readyz"))
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

/// The process series every Prometheus client library exposes, with their standard types and
/// plausible values for a process started within the last few minutes.
fn assert_process_series(text: &str, now: std::time::SystemTime) {
    let at = |name: &str| sample(text, name, &[]).unwrap_or_else(|| panic!("no {name}:\n{text}"));
    assert!(
        text.contains("# TYPE process_cpu_seconds counter\n"),
        "{text}"
    );
    assert!(at("process_cpu_seconds_total") > 0.0);
    for gauge in [
        "process_start_time_seconds",
        "process_max_fds",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge\n")),
            "{gauge}:\n{text}"
        );
    }
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = at("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "started at {started}, now {now}"
    );
    assert!(at("process_max_fds") > 0.0);
    assert!(at("process_open_fds") >= 1.0);
    assert!(at("process_open_fds") <= at("process_max_fds"));
    assert!(at("process_resident_memory_bytes") > 1e6);
    assert!(at("process_virtual_memory_bytes") >= at("process_resident_memory_bytes"));
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
