//! Prometheus metrics: a registry per process, the process's own figures, and label helpers
//! that keep every label to a small fixed set of values.

mod process;

pub use process::cpu_seconds;

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Buckets for latencies from 0.25 ms to about 8 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Buckets for batch sizes from 1 to 16,384.
pub fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// Figures of the process itself, refreshed at each scrape (see [`process`]), and the open
/// client connections.
#[derive(Default)]
pub struct Process {
    figures: process::ProcessCollector,
    /// Open client connections (HTTP), kept by the server.
    pub open_connections: Gauge<i64, AtomicI64>,
}

impl Process {
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.figures.clone()));
        registry.register(
            "coupon_open_connections",
            "Open HTTP client connections",
            self.open_connections.clone(),
        );
    }

    /// Reads the figures from `/proc/self` (Linux; elsewhere they are left out).
    pub fn refresh(&self) {
        let figures = process::Figures::read();
        *self
            .figures
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = figures;
    }
}

/// Counts one open connection for as long as it lives.
pub struct ConnectionGuard(Gauge<i64, AtomicI64>);

impl ConnectionGuard {
    pub fn open(gauge: &Gauge<i64, AtomicI64>) -> Self {
        gauge.inc();
        ConnectionGuard(gauge.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The Prometheus text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    text
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value of an HTTP status: the codes the services answer, or `other`.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// A gauge set from a count at scrape time.
pub fn set_count(gauge: &Gauge, count: usize) {
    gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// Seconds since `started`, for histograms.
pub fn seconds_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_carry_the_standard_names() {
        let process = Process::default();
        let mut registry = Registry::default();
        process.register(&mut registry);
        process.refresh();
        let text = render(&registry);
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}:\n{text}"))
        };
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.0);
        for gauge in [
            "process_start_time_seconds",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
        ] {
            assert!(text.contains(&format!("# TYPE {gauge} gauge\n")), "{text}");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 24.0 * 3600.0,
            "{started}"
        );
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_open_fds") >= 1.0);
        assert!(
            value("process_resident_memory_bytes") > 1024.0 * 1024.0,
            "{text}"
        );
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(text.ends_with("# EOF\n"));
    }
}
