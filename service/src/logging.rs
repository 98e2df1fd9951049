//! Log output: one JSON object per line (the default, for log collectors) or human-readable
//! text, filtered by `RUST_LOG`. Levels: ERROR means an operator must act, WARN a dependency
//! misbehaved and the process coped, INFO lifecycle events, DEBUG per-batch detail.

use tracing_subscriber::EnvFilter;

use crate::config::{Common, LogFormat};

/// Installs the global subscriber. Call once, after the configuration was read.
pub fn init(common: &Common) {
    let filter = EnvFilter::try_new(&common.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match common.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}
