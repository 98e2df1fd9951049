//! Persisting: from the requested topic to the ledger.
//!
//! [`crate::Persister`] gathers a [`batch::Batch`] of records, each first checked for readable
//! [`headers`] and the ingress's signature ([`signature`]), then decoded and validated ([`decode`]); poison goes to
//! the [`dead_letter`] topic. The [`store`] writes the batch in one
//! transaction: it reads the facts under the campaigns' row locks, lets the pure [`plan`] decide,
//! and writes what the plan says; [`notify`] tells the ingress processes which issuances it
//! settled (delivered at the commit). Only after the commit do the batch's offsets move.

pub mod batch;
pub mod dead_letter;
pub mod decode;
pub mod headers;
pub mod notify;
pub mod plan;
pub mod signature;
pub mod store;
