//! The pipeline across processes: the ingress, the consumer and `couponctl` as the binaries
//! they ship as, each test on a private Redis and broker of its own (`testkit::World`).
//!
//! - `faults`: one fault per case injected mid-burst, then every invariant checked.
//! - `outbox`: the relay publishes each coupon's event once, and webhooks are signed, retried,
//!   dead-lettered and replayed.
//! - `events`: each campaign's lifecycle events are published once by racing consumers.
//! - `operations`: metrics, JSON logs, graceful shutdown, configuration, traces, the demo.
//! - `loadtest`: the k6 scripts against the pipeline.
//! - `managed_all`: issuance over TLS to PostgreSQL, Redis and Kafka at once, in production.
//! - `managed_kafka`: TLS and SCRAM to Kafka through the one client builder, each failure named,
//!   and issuance over them.
//! - `managed_postgres`: libpq's TLS settings against a TLS-only PostgreSQL, and issuance over it.
//! - `managed_redis`: the pipeline over a TLS-only Redis and over a Redis Cluster.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod events;
mod faults;
mod loadtest;
mod long_poll;
mod managed_all;
mod managed_kafka;
mod managed_postgres;
mod managed_redis;
mod operations;
mod outbox;
