//! W3C trace context across process boundaries: read from HTTP headers, written to and read
//! from Kafka headers, attached to the current `tracing` span. All of it is a no-op while trace
//! export is off (no propagator installed).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The context of `span` as propagation headers (`traceparent`, maybe `tracestate`).
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = Carrier(HashMap::new());
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    headers.0
}

/// Makes the context carried by `headers` (name, value) the parent of `span`.
pub fn set_parent<'a>(
    span: &tracing::Span,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let _ = span.set_parent(extract(headers));
}

/// Adds the context carried by `headers` as a link of `span` (a batch consumed from many
/// producers has one parent and links to the rest).
pub fn add_link<'a>(span: &tracing::Span, headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
    use opentelemetry::trace::TraceContextExt as _;
    let context = extract(headers);
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The W3C trace context in `headers`. Only `traceparent` and `tracestate` are copied, so a
/// request's other headers cost nothing here (this runs for every HTTP request).
fn extract<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> opentelemetry::Context {
    let carrier = Carrier(
        headers
            .into_iter()
            .filter(|(name, _)| {
                name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
            })
            .filter_map(|(name, value)| {
                Some((
                    name.to_ascii_lowercase(),
                    std::str::from_utf8(value).ok()?.to_owned(),
                ))
            })
            .collect(),
    );
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier))
}

/// The trace id of `span` in hex, when it belongs to an exported trace.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
