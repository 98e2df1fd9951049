//! Why the brokers do not answer. librdkafka reports a refused certificate, a failed SASL
//! exchange or an unreachable address through its error callback, asynchronously, and keeps
//! retrying; the request that met the failure only times out. A client built with [`Reporter`]
//! logs each of those errors and keeps the last, so a failed call can name its cause
//! ([`KafkaFailure`]) instead of a bare timeout.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaArgs;

/// The errors librdkafka reported about the brokers: each is logged, the last is kept.
#[derive(Debug, Default)]
pub struct BrokerErrors {
    last: Mutex<Option<String>>,
}

impl BrokerErrors {
    /// Logs an error of the client's error callback and keeps it. "All brokers are down"
    /// follows the error that brought the last one down, which says more: it is logged only.
    pub fn record(&self, error: &KafkaError, reason: &str) {
        tracing::error!(error = %error, reason, "kafka client error");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(reason.to_owned());
    }

    /// Logs a line of librdkafka's log as its default does. An error line, or a broker's
    /// failure (facility `FAIL`) is kept as an error is: some failures are only logged, such as
    /// plaintext to a TLS listener ("Disconnected while requesting ApiVersion: might be caused
    /// by incorrect security.protocol configuration"), with no error event.
    pub fn record_log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
        let error = matches!(level, L::Emerg | L::Alert | L::Critical | L::Error);
        if error || facility == "FAIL" {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            *last = Some(message.to_owned());
        }
    }

    /// The last error kept, if any (librdkafka's reason: broker address and cause).
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A client context that logs librdkafka's errors and keeps the last ([`BrokerErrors`]).
#[derive(Debug, Default)]
pub struct Reporter {
    pub errors: BrokerErrors,
}

impl ClientContext for Reporter {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.errors.record_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }
}

impl ConsumerContext for Reporter {}

/// A Kafka call that failed, naming `KAFKA_BROKERS` and, when librdkafka reported one, the
/// cause (a TLS or SASL failure shows here, not as the bare timeout of the call).
#[derive(Debug)]
pub struct KafkaFailure(Box<Failure>);

#[derive(Debug)]
struct Failure {
    brokers: String,
    error: KafkaError,
    cause: Option<String>,
}

impl KafkaFailure {
    pub fn new(brokers: &str, error: KafkaError, cause: Option<String>) -> KafkaFailure {
        KafkaFailure(Box::new(Failure {
            brokers: brokers.to_owned(),
            error,
            cause,
        }))
    }

    /// The error of the call itself (often a timeout, when the cause is a refusal).
    pub fn error(&self) -> &KafkaError {
        &self.0.error
    }

    /// What librdkafka last reported about the brokers, if anything.
    pub fn cause(&self) -> Option<&str> {
        self.0.cause.as_deref()
    }
}

impl std::fmt::Display for KafkaFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KAFKA_BROKERS={}: {}", self.0.brokers, self.0.error)?;
        match &self.0.cause {
            Some(cause) => write!(f, "; the brokers' last error: {cause}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for KafkaFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.error)
    }
}

impl KafkaArgs {
    /// A failure of a call made through `client`, with the cause it reported. Errors queued
    /// for the callback are served first (a consumer serves them only when polled).
    pub fn failure(&self, client: &BaseConsumer<Reporter>, error: KafkaError) -> KafkaFailure {
        // Nothing is subscribed or assigned: a poll serves events (one error each), it takes
        // no message. Drain what is queued, for a moment at most.
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            if client.poll(Duration::from_millis(50)).is_none() {
                break;
            }
        }
        KafkaFailure::new(&self.brokers, error, client.context().errors.last())
    }

    /// Asks the brokers for `topic`'s metadata (or the cluster's, without a topic) within
    /// `timeout`: the start-up check of the binaries and commands. A topic the cluster does
    /// not have is `UnknownTopicOrPartition`. Blocking.
    pub fn look_up(
        &self,
        client_id: &str,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<(), KafkaFailure> {
        let client: BaseConsumer<Reporter> = self
            .client(client_id)
            .create_with_context(Reporter::default())
            .map_err(|error| KafkaFailure::new(&self.brokers, error, None))?;
        let metadata = client
            .fetch_metadata(topic, timeout)
            .map_err(|error| self.failure(&client, error))?;
        let Some(topic) = topic else {
            return Ok(());
        };
        let known = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if known {
            Ok(())
        } else {
            let unknown = KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
            Err(KafkaFailure::new(&self.brokers, unknown, None))
        }
    }

    /// [`KafkaArgs::look_up`] off the async runtime's threads.
    pub async fn check(
        &self,
        client_id: &str,
        topic: Option<&str>,
        timeout: Duration,
    ) -> Result<(), KafkaFailure> {
        let (kafka, client_id) = (self.clone(), client_id.to_owned());
        let topic = topic.map(str::to_owned);
        tokio::task::spawn_blocking(move || kafka.look_up(&client_id, topic.as_deref(), timeout))
            .await
            .unwrap_or_else(|_| Err(KafkaFailure::new(&self.brokers, KafkaError::Canceled, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_outlives_the_summary_that_follows_it() {
        let errors = BrokerErrors::default();
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::SSL),
            "ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed",
        );
        errors.record(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let failure = KafkaFailure::new(
            "b:9093",
            KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
            errors.last(),
        );
        let text = failure.to_string();
        assert!(text.starts_with("KAFKA_BROKERS=b:9093: "), "{text}");
        assert!(text.ends_with("certificate verify failed"), "{text}");
    }
}
