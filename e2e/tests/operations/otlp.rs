//! One trace across the services, exported over OTLP/HTTP (JSON) to a tiny receiver in this
//! test that keeps every span it was sent, with its kind and attributes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use testkit::World;

/// One received span, flattened.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub links: Vec<(String, String)>,
    /// `SPAN_KIND_SERVER` (2), `CLIENT` (3), `PRODUCER` (4), `CONSUMER` (5).
    pub kind: u64,
    /// Every attribute's value as text (numbers and booleans too).
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Asserts every (key, value) pair is an attribute of the span, and none of `absent` is.
    pub fn assert_attributes(&self, present: &[(&str, &str)], absent: &[&str]) {
        for (key, value) in present {
            assert_eq!(
                self.attribute(key),
                Some(*value),
                "{key} of {}: {:?}",
                self.name,
                self.attributes
            );
        }
        for key in absent {
            assert_eq!(
                self.attribute(key),
                None,
                "{key} on {}: {:?}",
                self.name,
                self.attributes
            );
        }
    }
}

/// The value of an OTLP JSON `AnyValue` as text; 64-bit integers come as strings or numbers.
fn any_value(value: &Value) -> String {
    let Some((_, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return String::new();
    };
    match inner {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub struct Collector {
    pub port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = kept.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let body = request.into_body().collect().await.map(|b| b.to_bytes());
                        if let Ok(body) = body
                            && let Ok(export) = serde_json::from_slice::<Value>(&body)
                        {
                            kept.lock().unwrap().extend(flatten(&export));
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { port, spans, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The spans of one `ExportTraceServiceRequest` in OTLP JSON.
fn flatten(export: &Value) -> Vec<Span> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut spans = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                spans.push(Span {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]).to_ascii_lowercase(),
                    span_id: text(&span["spanId"]).to_ascii_lowercase(),
                    parent_span_id: text(&span["parentSpanId"]).to_ascii_lowercase(),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            (
                                text(&l["traceId"]).to_ascii_lowercase(),
                                text(&l["spanId"]).to_ascii_lowercase(),
                            )
                        })
                        .collect(),
                    kind: span["kind"].as_u64().unwrap_or_default(),
                    attributes: span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (text(&a["key"]), any_value(&a["value"])))
                        .collect(),
                });
            }
        }
    }
    spans
}

/// One trace spans the services: the client's `traceparent` is the parent of the ingress's
/// request span, whose produce span travels in the Kafka headers and becomes the parent of the
/// consumer's batch span, whose PostgreSQL span is its child; the outbox relay continues the
/// produce span when it publishes `coupon.issued`. Spans are named and described by the
/// OpenTelemetry semantic conventions (HTTP server, messaging). The sampler is the one the
/// environment names: with `parentbased_traceidratio` at 0, the sampled caller's trace is kept
/// whole and a request without a caller's trace is not exported at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_http_kafka_and_the_ledger() {
    let collector = Collector::start().await;
    let world = World::start_with(
        "traces",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG", "0".to_owned()),
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

    let requested = &world.fixture.topic;
    let issued_topic = &world.fixture.issued_topic;
    let names = [
        "POST /v1/campaigns/{campaign_id}/issuances".to_owned(),
        "redis.reserve".to_owned(),
        format!("send {requested}"),
        format!("process {requested}"),
        "postgres.write_batch".to_owned(),
        format!("send {issued_topic}"),
    ];
    let spans = testkit::eventually(Duration::from_secs(30), "the whole trace", || async {
        let spans: Vec<Span> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        names
            .iter()
            .all(|n| spans.iter().any(|s| &s.name == n))
            .then_some(spans)
    })
    .await;
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let request = find(&names[0]);
    let produce = find(&names[2]);
    let batch = find(&names[3]);
    let relay = find(&names[5]);
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
    assert_eq!(relay.service, "coupon-consumer");
    assert_eq!(
        relay.parent_span_id, produce.span_id,
        "the outbox carries the trace on"
    );
    let issued = world.fixture.read_topic(issued_topic).await;
    let carried = issued[0].header("traceparent").unwrap_or_default();
    assert!(
        carried.contains(trace_id) && carried.contains(&relay.span_id),
        "{carried}"
    );
    assert_conventions(&world, request, produce, batch, relay);

    // Log lines inside a traced span carry its trace id.
    let log = std::fs::read_to_string(world.log_path("consumer")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("batch committed"))
        .expect("the consumer logged the batch");
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["span"]["trace_id"], trace_id, "{line}");

    // Without a caller's sampled trace, a ratio of 0 keeps nothing, through every service.
    let response = world
        .http
        .post(format!("{}/v1/campaigns/{campaign}/issuances", world.base))
        .bearer_auth(testkit::token("untraced-user", None, 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    world
        .fixture
        .wait_for_rows(2, "the untraced issuance persisted")
        .await;
    testkit::eventually(Duration::from_secs(30), "its coupon.issued", || async {
        (world.fixture.topic_len(issued_topic).await >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let others: Vec<String> = collector
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != trace_id)
        .map(|s| s.name)
        .collect();
    assert!(others.is_empty(), "sampled at a ratio of 0: {others:?}");
}

/// The attributes the OpenTelemetry semantic conventions give HTTP server and Kafka spans,
/// and none of the names used before them.
fn assert_conventions(world: &World, request: &Span, produce: &Span, batch: &Span, relay: &Span) {
    let (requested, issued) = (&world.fixture.topic, &world.fixture.issued_topic);
    assert_eq!(request.kind, 2, "server");
    request.assert_attributes(
        &[
            ("http.request.method", "POST"),
            ("http.route", "/v1/campaigns/{campaign_id}/issuances"),
            ("http.response.status_code", "202"),
            ("url.scheme", "http"),
        ],
        &["http.method", "http.status", "error.type"],
    );
    assert!(
        request
            .attribute("url.path")
            .is_some_and(|p| p.starts_with("/v1/campaigns/") && !p.contains('{')),
        "{:?}",
        request.attributes
    );
    let kafka = [("messaging.system", "kafka")];
    assert_eq!((produce.kind, relay.kind, batch.kind), (4, 4, 5));
    for (span, topic, operation) in [
        (produce, requested, "send"),
        (relay, issued, "send"),
        (batch, requested, "process"),
    ] {
        span.assert_attributes(
            &[
                kafka[0],
                ("messaging.destination.name", topic),
                ("messaging.operation.type", operation),
            ],
            &["size"],
        );
    }
    for span in [produce, relay] {
        assert!(
            span.attribute("messaging.message.id")
                .is_some_and(|id| !id.is_empty()),
            "{:?}",
            span.attributes
        );
    }
    batch.assert_attributes(
        &[
            ("messaging.consumer.group.name", &world.fixture.group),
            ("messaging.batch.message_count", "1"),
        ],
        &[],
    );
}
