//! The records gathered for one transaction.

use std::collections::BTreeMap;

use rdkafka::message::{Headers as _, Message};

use super::decode::{Issuance, Poison, decode};

/// Most producer traces one batch span refers to.
const TRACE_LINKS: usize = 64;

/// Records gathered for one transaction, and the last offset seen per partition.
#[derive(Default)]
pub struct Batch {
    /// The valid records' issuances, in the order they were received.
    pub issuances: Vec<Issuance>,
    /// The last offset seen per partition, poison included: stored once the batch committed.
    pub last_offsets: BTreeMap<i32, i64>,
    /// Trace headers of the first records that carry them: the batch span's parent and links.
    traces: Vec<Vec<(String, Vec<u8>)>>,
}

impl Batch {
    /// Counts a record that is not added (its signature was refused): its offset is stored
    /// with the batch's.
    pub fn skip(&mut self, message: &impl Message) {
        self.last_offsets
            .insert(message.partition(), message.offset());
    }

    /// Adds one record. A poison record is returned as its reason, for the caller to
    /// dead-letter; its offset counts as seen all the same.
    pub fn push(&mut self, message: &impl Message) -> Result<(), Poison> {
        let decoded = decode(message.payload()).map(|mut issuance| {
            issuance.traceparent = traceparent(message);
            issuance
        });
        self.last_offsets
            .insert(message.partition(), message.offset());
        if self.traces.len() < TRACE_LINKS
            && let Some(headers) = message.headers()
        {
            let trace: Vec<(String, Vec<u8>)> = headers
                .iter()
                .filter(|h| h.key == "traceparent" || h.key == "tracestate")
                .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                .collect();
            if !trace.is_empty() {
                self.traces.push(trace);
            }
        }
        self.issuances.push(decoded?);
        Ok(())
    }

    /// The span of the batch's transaction, processing records of `topic` for consumer group
    /// `group`: a child of the first traced record's producer, linked to the others.
    pub fn span(&self, topic: &str, group: &str) -> tracing::Span {
        let span = tracing::info_span!(
            "consumer.batch",
            otel.name = %format!("process {topic}"),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = topic,
            messaging.consumer.group.name = group,
            messaging.batch.message_count = self.issuances.len(),
            trace_id = tracing::field::Empty,
        );
        let mut traces = self.traces.iter();
        if let Some(first) = traces.next() {
            service::tracing_context::set_parent(
                &span,
                first.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            );
        }
        for other in traces {
            service::tracing_context::add_link(
                &span,
                other.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            );
        }
        if let Some(trace_id) = service::tracing_context::trace_id(&span) {
            span.record("trace_id", trace_id);
        }
        span
    }
}

/// The record's `traceparent` header, carried on to the coupon's outbox event.
fn traceparent(message: &impl Message) -> Option<String> {
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}
