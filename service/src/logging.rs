//! Logs and traces.
//!
//! Logs: one JSON object per line on stdout (the default, for log collectors) or
//! human-readable text, filtered by `RUST_LOG`; with traces exported, a line written inside a
//! span carries the span (and its trace id), without them only the event's own fields. Levels: ERROR means an operator must act, WARN a
//! dependency misbehaved and the process coped, INFO lifecycle events, DEBUG per-batch detail.
//!
//! Traces: OpenTelemetry spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by the standard `OTEL_*` variables
//! (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or `http/json`, `OTEL_SERVICE_NAME`,
//! `OTEL_BSP_*`); off otherwise, or with `OTEL_SDK_DISABLED=true`. Export runs on its own thread
//! from a bounded queue: when the collector is slow, spans are dropped, requests never wait.
//! The W3C `traceparent` is read from HTTP requests and carried in Kafka headers. Which traces
//! are kept is `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ([`sampler`]):
//! `parentbased_always_on` by default, so a caller's sampled flag is followed and every request
//! without one starts a sampled trace.

mod sampler;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Common, LogFormat};

/// Flushes exported spans when the process ends; keep it until then.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued and stops the exporter (bounded by the exporter's timeout).
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber (logs, and traces when configured). Call once, after the
/// configuration was read; `service` names the process in traces unless `OTEL_SERVICE_NAME`
/// does.
pub fn init(common: &Common, service: &'static str) -> Telemetry {
    crate::tls::install();
    let filter = EnvFilter::try_new(&common.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (provider, problem) = match tracer_provider(service) {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let traces = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service))
    });
    // With traces exported, a log line written inside a span carries it (its trace id ties the
    // line to the trace). Without, there is no trace to tie to: the log layer sees events only.
    let spans_in_logs = traces.is_some();
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    match common.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(spans_in_logs)
                    .with_span_list(false)
                    .with_writer(std::io::stdout)
                    .with_filter(events_only(!spans_in_logs)),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::io::stdout)
                    .with_filter(events_only(!spans_in_logs)),
            )
            .init(),
    }
    if let Some(problem) = problem {
        tracing::error!(error = %problem, "trace export is misconfigured; running without it");
    }
    Telemetry { provider }
}

/// The log lines' filter: when `events_only`, spans are left to the trace layer. A log layer
/// that saw them would format every span's fields on every request (the request, the
/// reservation, the produce), whether or not a line is ever written inside it: about a fifth of
/// the ingress's CPU per sold-out answer (docs/BENCHMARKS.md).
fn events_only(
    events_only: bool,
) -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::FilterFn::new(move |metadata| !events_only || metadata.is_event())
}

fn tracer_provider(service: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    if disabled
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let sampler = sampler::from_env()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol()?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource.build())
            .build(),
    ))
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`; `http/protobuf` by
/// default. gRPC is not built in.
fn protocol() -> Result<opentelemetry_otlp::Protocol, String> {
    let value = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".to_owned());
    match value.trim() {
        "http/protobuf" => Ok(opentelemetry_otlp::Protocol::HttpBinary),
        "http/json" => Ok(opentelemetry_otlp::Protocol::HttpJson),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported (http/protobuf, http/json)"
        )),
    }
}
