//! The pipeline across processes: the ingress, the consumer and `couponctl` as the binaries
//! they ship as, each test on a private Redis and broker of its own (`testkit::World`).
//!
//! - `faults`: one fault per case injected mid-burst, then every invariant checked.
//! - `outbox`: the relay publishes each coupon's event once, and webhooks are signed, retried,
//!   dead-lettered and replayed.
//! - `events`: each campaign's lifecycle events are published once by racing consumers.
//! - `operations`: metrics, JSON logs, graceful shutdown, configuration, traces, the demo.
//! - `loadtest`: the k6 scripts against the pipeline.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod events;
mod faults;
mod loadtest;
mod operations;
mod outbox;
