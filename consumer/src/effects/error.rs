//! The one error type of the effects: why a relay, announcer, notifier or purge round failed.
//! Each round is retried as a whole, so callers log it and try again; none of them is fatal.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("kafka did not acknowledge an event: {0}")]
    Kafka(rdkafka::error::KafkaError),
    #[error("outbox row {id} has kind {kind:?}, which this version does not publish")]
    UnknownOutboxKind { id: i64, kind: String },
}
