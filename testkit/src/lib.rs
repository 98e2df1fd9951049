//! The test harness of the workspace, on the real Redis, Kafka and PostgreSQL.
//!
//! # Layout
//!
//! - [`fixture`]: the resources of one test (a fresh database, topics, a Redis key prefix and a
//!   consumer group), removed when dropped, so tests run in parallel and leave the services as
//!   they found them. [`ledger`] adds what a test reads back from its database.
//! - [`token`](mod@token): bearer tokens signed with the tests' HS256 secret.
//! - [`api`]: [`Api`], the HTTP client of the public and operator API that every harness
//!   speaks through, and [`burst`], many users at once.
//! - [`procs`]: real processes (a private Redis and broker, the workspace's binaries), killed
//!   when dropped; [`redis_faults`]: that Redis as production runs it (AOF everysec) and the
//!   ways it loses acknowledged writes; [`proxy`]: a TCP proxy that can take a server away or
//!   point to another one; [`raw_kafka`]: one
//!   record produced byte for byte (headers no client library would write); [`certs`]: a
//!   throwaway certificate authority for the TLS tests.
//! - [`broker_tls`]: a private broker reached as a managed Kafka is, over TLS and SCRAM.
//! - [`gate_copy`]: the gate's copy of a campaign's operator settings next to the ledger's.
//! - [`world`]: [`World`], the whole pipeline as processes on services of its own, for the
//!   suites that span processes and inject faults, with the invariant check they end on.
//!
//! The ingress's own suite runs the ingress in its process instead (its `Stack`), over the
//! same [`Fixture`] and [`Api`].

#![allow(clippy::unwrap_used)] // a harness that cannot set up fails the test, as it should

pub mod api;
pub mod broker_tls;
pub mod burst;
pub mod certs;
pub mod fixture;
pub mod gate_copy;
pub mod ledger;
pub mod pg_tls;
pub mod procs;
pub mod proxy;
pub mod raw_kafka;
pub mod redis_faults;
pub mod redis_servers;
pub mod token;
pub mod world;

use std::time::Duration;

pub use api::Api;
pub use burst::{Answer, after, users};
pub use fixture::{
    Fixture, Record, connect, create_topics, database_admin_url, kafka_brokers, redis_url,
};
pub use ledger::Footprint;
pub use procs::{
    PrivateBroker, PrivateRedis, Proc, free_port, stdout_of, wait_port, workspace_bin,
};
pub use proxy::FaultProxy;
pub use token::{HS256_SECRET, token, token_with_secret};
pub use world::World;

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
