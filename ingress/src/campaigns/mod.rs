//! Campaigns: `store` reads them from the ledger with the gate's live figures, `admin` serves
//! the operator routes that create and change them, `public` the cached public reads. `admin`
//! and `public` both use `store`; neither uses the other.

pub mod admin;
pub mod public;
pub mod store;
pub mod sync;
