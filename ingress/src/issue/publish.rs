//! Producing `IssuanceRequested` events. Idempotent producer, `acks=all`, bounded
//! `message.timeout.ms`; the ingress answers 202 only after the delivery report.
//!
//! Every failure is classified by what it proves about the event ([`super::delivery`]):
//! - [`PublishError::NotPersisted`]: Kafka certainly does not have it (refused when handed to
//!   librdkafka, or reported with the status `NOT_PERSISTED`: never sent). The caller releases
//!   the reservation and answers 503.
//! - [`PublishError::Uncertain`]: it may have been written (possibly persisted whatever the
//!   error, no report in time, producer gone). The caller keeps the reservation, answers 503, and
//!   the event is rolled forward later; the consumer de-duplicates on the issuance id.
//! - [`PublishError::Unsigned`]: no event key is active (not read yet, or every key retired),
//!   so nothing was sent: an unsigned event would be dead-lettered by the consumer.
//!
//! Every event carries its MAC in the `coupon-signature` header ([`service::event_keys`]).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use schema::proto::IssuanceRequested;
use schema::topics;
use service::event_keys::{self, EventKeys};
use tokio::sync::oneshot;

use super::delivery::{self, Failure, Producer, Reports};

/// How long past `message.timeout.ms` a caller still waits for the delivery report.
const DELIVERY_REPORT_GRACE_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka did not persist the event: {0}")]
    NotPersisted(KafkaError),
    #[error("kafka may or may not have persisted the event: {0}")]
    Uncertain(KafkaError),
    #[error("no event key is active: the event was not signed, nor sent")]
    Unsigned,
}

/// The producer of requested issuances. Clone is cheap (shared handles).
///
/// An idempotent producer can end up refusing every later message: a fatal error, a fenced
/// epoch after in-flight messages timed out, or a broker that came back without its producer
/// state (every message then times out). The publisher replaces such a producer with a new one,
/// once per generation however many requests noticed. Messages the old one still held resolve
/// by their own status (uncertain unless never sent); uncertain ones are rolled forward from
/// the journal.
#[derive(Clone)]
pub struct Publisher {
    current: std::sync::Arc<std::sync::RwLock<Generation>>,
    config: ClientConfig,
    topic: String,
    /// A producer that delivered nothing for this long while messages time out is stalled.
    stall: Duration,
    /// The longest a caller waits for one delivery report.
    deadline: Duration,
    /// When the last delivery succeeded, in ms since `epoch`.
    last_delivery_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
    /// The keys every event is signed with.
    keys: Arc<EventKeys>,
}

#[derive(Clone)]
struct Generation {
    number: u64,
    producer: Producer,
    /// When this producer was created, in ms since the publisher's `epoch`.
    born_ms: u64,
}

impl Publisher {
    pub fn new(
        kafka: &service::KafkaArgs,
        topic: &str,
        message_timeout_ms: u64,
        linger_ms: u64,
        keys: Arc<EventKeys>,
    ) -> Result<Self, KafkaError> {
        let config = kafka
            .producer("coupon-ingress")
            .set("message.timeout.ms", message_timeout_ms.to_string())
            .set("linger.ms", linger_ms.to_string())
            // Bounded local queue: when it is full we answer 503 at once instead of queueing.
            .set("queue.buffering.max.messages", "200000")
            .config();
        let producer = config.create_with_context(Reports)?;
        Ok(Publisher {
            current: std::sync::Arc::new(std::sync::RwLock::new(Generation {
                number: 0,
                producer,
                born_ms: 0,
            })),
            config,
            topic: topic.to_owned(),
            stall: Duration::from_millis(2 * message_timeout_ms),
            deadline: Duration::from_millis(message_timeout_ms + DELIVERY_REPORT_GRACE_MS),
            last_delivery_ms: Default::default(),
            epoch: std::time::Instant::now(),
            keys,
        })
    }

    /// Whether an event could be signed now: false until the event keys were read (or while
    /// every key is retired or pending). The handler answers 503 before reserving then.
    pub fn can_sign(&self) -> bool {
        self.keys.can_sign()
    }

    fn generation(&self) -> Generation {
        // A poisoned lock only means another thread panicked mid-swap; the value is whole.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the producer of generation `failed` if it is fatally broken, or if the broker
    /// says its producer id or epoch is no longer valid (every later message would fail too).
    fn replace_if_broken(&self, failed: &Generation, error: &KafkaError) {
        use RDKafkaErrorCode as C;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let stall_ms = self.stall.as_millis() as u64;
        let last_ms = self
            .last_delivery_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(failed.born_ms);
        let stalled = now_ms.saturating_sub(last_ms) > stall_ms;
        let (code, reason) = match (failed.producer.client().fatal_error(), error) {
            (Some(fatal), _) => fatal,
            (None, KafkaError::MessageProduction(code @ C::MessageTimedOut)) if stalled => {
                (*code, format!("nothing delivered for {stall_ms} ms"))
            }
            (
                None,
                KafkaError::MessageProduction(
                    code @ (C::ProducerFenced
                    | C::InvalidProducerEpoch
                    | C::UnknownProducerId
                    | C::OutOfOrderSequenceNumber
                    | C::Fatal),
                ),
            ) => (*code, error.to_string()),
            _ => return,
        };
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.number != failed.number {
            return;
        }
        match self.config.create_with_context::<_, Producer>(Reports) {
            Ok(producer) => {
                tracing::error!(?code, %reason, "the Kafka producer is unusable; replaced it");
                let retired = std::mem::replace(
                    &mut *current,
                    Generation {
                        number: failed.number + 1,
                        producer,
                        born_ms: now_ms,
                    },
                );
                self.retire(retired);
            }
            Err(e) => tracing::error!(error = %e, "replacing the failed Kafka producer failed"),
        }
    }

    /// Destroying a librdkafka producer blocks (purge, flush, thread joins) and purges what it
    /// still holds, so the old one is dropped on a blocking thread, and only once every request
    /// still waiting on it has given up (no caller waits longer than `deadline`).
    fn retire(&self, retired: Generation) {
        let grace = self.stall.max(self.deadline);
        let retire = move || {
            std::thread::sleep(grace);
            drop(retired);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(retire);
            }
            Err(_) => retire(),
        }
    }

    /// Signs one event, sends it and waits for its delivery report.
    pub async fn publish(&self, event: &IssuanceRequested) -> Result<(), PublishError> {
        let key = topics::record_key(&event.campaign_id, &event.user_id);
        let payload = event.encode_to_vec();
        let signature = self
            .keys
            .sign(key.as_bytes(), &payload)
            .ok_or(PublishError::Unsigned)?;
        let headers = headers(event).insert(Header {
            key: event_keys::HEADER,
            value: Some(&signature),
        });
        let (waiter, report) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(waiter))
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let generation = self.generation();
        let outcome = match generation.producer.send(record) {
            Err((e, _)) => Err(Failure::Refused(e)),
            Ok(()) => self.wait(report).await,
        };
        outcome.map_err(|failure| {
            self.replace_if_broken(&generation, failure.error());
            delivery::classify(failure)
        })
    }

    /// Waits for one message's delivery report. librdkafka answers by `message.timeout.ms` in
    /// the usual case, but not always promptly (a broker that vanished mid-request); the
    /// request's own deadline bounds the wait regardless, and a message still unreported then
    /// is as uncertain as a timeout.
    async fn wait(&self, report: oneshot::Receiver<delivery::Report>) -> Result<(), Failure> {
        match tokio::time::timeout(self.deadline, report).await {
            Err(_elapsed) => Err(Failure::Unreported(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            ))),
            Ok(Ok(Ok(()))) => {
                let now_ms = self.epoch.elapsed().as_millis() as u64;
                self.last_delivery_ms
                    .store(now_ms, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Ok(Ok(Err((e, persistence)))) => Err(Failure::Reported(e, persistence)),
            // The producer went away before it reported: the event may be in flight.
            Ok(Err(_gone)) => Err(Failure::Unreported(KafkaError::Canceled)),
        }
    }

    /// Asks the cluster for the topic's metadata: readiness and start-up check.
    pub async fn check(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.generation().producer;
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(Some(&topic), timeout)?;
            let known = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
            if known {
                Ok(())
            } else {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))
            }
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
    }

    /// Events handed to the producer and not yet answered by a delivery report.
    pub fn queued(&self) -> usize {
        usize::try_from(self.generation().producer.in_flight_count()).unwrap_or(0)
    }

    /// Waits for every queued event's delivery report (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.generation().producer.flush(timeout)
    }
}

/// The event's CloudEvents headers and trace context. The issuance id is the event id (a
/// re-produced event carries the same) and its subject, the admission time is the event time.
fn headers(event: &IssuanceRequested) -> OwnedHeaders {
    let trace = service::tracing_context::headers_of(&tracing::Span::current());
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(event.requested_at_ms) * 1_000_000,
    )
    .ok()
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default();
    service::kafka::event_headers(
        &service::kafka::Event {
            id: &event.issuance_id,
            ce_type: topics::ISSUANCE_REQUESTED_TYPE,
            time: &time,
            schema: topics::ISSUANCE_REQUESTED_SCHEMA,
            subject: &event.issuance_id,
        },
        &trace,
    )
}
