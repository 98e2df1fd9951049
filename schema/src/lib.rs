//! Contracts shared by every part of the coupon pipeline.
//!
//! # Layout
//! - [`proto`]: the protobuf messages of the Kafka topics, generated from `proto/` at build time.
//! - [`campaign`]: campaign limits, the discount, campaign and coupon statuses as types.
//! - [`ids`]: validated identifiers (campaign, user, issuance) and the issuance id format.
//! - [`migrate`]: the versioned SQL migrations of the ledger in `migrations/`, embedded in the binary.
//! - [`time`]: milliseconds since the epoch and RFC 3339, as events and JSON carry time.
//! - [`topics`]: default topic names and the record key format.

pub mod campaign;
pub mod ids;
pub mod migrate;
pub mod time;
pub mod topics;

/// Generated protobuf types (`coupon.v1`). Never edited by hand.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/coupon.v1.rs"));
}

/// Content type carried in the `content-type` header of every record we produce.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
