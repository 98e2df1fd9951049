//! What a failed produce says about the event. The answer comes from librdkafka's own record of
//! each message (`rd_kafka_message_status`), never from the error code alone: a message that
//! may have reached a broker (sent, then timed out in flight, retried, purged, or refused on a
//! later attempt) keeps the status `POSSIBLY_PERSISTED` whatever error its report carries, and
//! librdkafka never downgrades it to `NOT_PERSISTED`.
//!
//! Only two failures prove that Kafka does not have the event:
//! - librdkafka refused it at enqueue time (`send` returned it): it never entered the queue;
//! - its delivery report says `NOT_PERSISTED`: it was never sent.
//!
//! Everything else (possibly persisted, no report before the caller's deadline, a producer gone
//! before it reported) is uncertain, and the reservation is rolled forward.

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::oneshot;

use super::publish::PublishError;

/// The ingress's producer: its delivery reports carry each message's persistence status.
pub type Producer = ThreadedProducer<Reports>;

/// Whether the broker may hold a message, as librdkafka recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Never sent to a broker: Kafka certainly does not have it.
    NotPersisted,
    /// Sent at least once without an acknowledgement: Kafka may have it.
    PossiblyPersisted,
    /// Acknowledged by the broker.
    Persisted,
}

/// The delivery report of one message: acknowledged, or the last error and the message's status.
pub type Report = Result<(), (KafkaError, Persistence)>;

/// How one produce failed.
#[derive(Debug)]
pub enum Failure {
    /// librdkafka refused the message when it was handed over: it never entered the queue.
    Refused(KafkaError),
    /// The delivery report's error and the message's status.
    Reported(KafkaError, Persistence),
    /// No report before the caller's deadline, or the producer went away before it reported.
    Unreported(KafkaError),
}

impl Failure {
    pub fn error(&self) -> &KafkaError {
        match self {
            Failure::Refused(error) | Failure::Reported(error, _) | Failure::Unreported(error) => {
                error
            }
        }
    }
}

/// Sorts a failure by whether the event can be on the broker. The error code plays no part:
/// only a refusal at enqueue time or the status `NOT_PERSISTED` proves the event absent.
pub fn classify(failure: Failure) -> PublishError {
    match failure {
        Failure::Refused(error) | Failure::Reported(error, Persistence::NotPersisted) => {
            PublishError::NotPersisted(error)
        }
        Failure::Reported(error, Persistence::PossiblyPersisted | Persistence::Persisted)
        | Failure::Unreported(error) => PublishError::Uncertain(error),
    }
}

/// The producer's context: hands each delivery report, with the message's status, to the
/// request waiting for it. librdkafka's logs and errors go to tracing as by default.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        let report = match result {
            Ok(_) => Ok(()),
            Err((error, message)) => Err((error.clone(), persistence(message))),
        };
        // The request may have stopped waiting (its deadline passed): nobody to tell then.
        let _ = waiter.send(report);
    }
}

/// librdkafka's persistence status of a reported message.
#[allow(unsafe_code)] // the one librdkafka call rdkafka does not wrap
fn persistence(message: &BorrowedMessage<'_>) -> Persistence {
    use rdkafka_sys::rd_kafka_msg_status_t as Status;
    // SAFETY: `message` borrows a message of a delivery report that librdkafka keeps alive for
    // the length of the callback; the call only reads the message's status.
    let status = unsafe { rdkafka_sys::rd_kafka_message_status(message.ptr()) };
    match status {
        Status::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Persistence::NotPersisted,
        Status::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => Persistence::PossiblyPersisted,
        Status::RD_KAFKA_MSG_STATUS_PERSISTED => Persistence::Persisted,
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

    use super::{Failure, Persistence, PublishError, classify};

    /// Codes a delivery report can carry, those that once meant "released" among them.
    const CODES: [C; 14] = [
        C::QueueFull,
        C::MessageSizeTooLarge,
        C::InvalidMessage,
        C::UnknownTopic,
        C::UnknownTopicOrPartition,
        C::TopicAuthorizationFailed,
        C::ClusterAuthorizationFailed,
        C::PurgeQueue,
        C::PurgeInflight,
        C::MessageTimedOut,
        C::NotEnoughReplicasAfterAppend,
        C::OutOfOrderSequenceNumber,
        C::ProducerFenced,
        C::Fatal,
    ];

    fn released(failure: Failure) -> bool {
        matches!(classify(failure), PublishError::NotPersisted(_))
    }

    #[test]
    fn a_report_releases_only_when_not_persisted_whatever_its_code() {
        let statuses = [
            (Persistence::NotPersisted, true),
            (Persistence::PossiblyPersisted, false),
            (Persistence::Persisted, false),
        ];
        for code in CODES {
            for (status, release) in statuses {
                let failure = Failure::Reported(KafkaError::MessageProduction(code), status);
                assert_eq!(released(failure), release, "{code:?} with {status:?}");
            }
        }
    }

    #[test]
    fn a_refusal_at_enqueue_releases_whatever_its_code() {
        for code in CODES {
            let failure = Failure::Refused(KafkaError::MessageProduction(code));
            assert!(released(failure), "{code:?} refused at enqueue");
        }
    }

    #[test]
    fn no_report_is_uncertain() {
        for error in [
            KafkaError::MessageProduction(C::MessageTimedOut),
            KafkaError::MessageProduction(C::PurgeQueue),
            KafkaError::Canceled,
        ] {
            assert!(!released(Failure::Unreported(error.clone())), "{error}");
        }
    }
}
