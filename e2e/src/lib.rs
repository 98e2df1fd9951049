//! End-to-end suites: the pipeline's binaries as real processes (`testkit::World`), with
//! faults injected into services of each test's own. The tests are in one binary,
//! `tests/e2e.rs`; this crate has no code of its own. The suites run the binaries that
//! `cargo build --workspace --bins` leaves beside them (`dev/test` builds them first).
