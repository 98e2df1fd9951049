//! Prometheus metrics: a registry per process, the process's own figures, and label helpers
//! that keep every label to a small fixed set of values.

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

/// Figures of the process itself, refreshed at each scrape.
#[derive(Default)]
pub struct Process {
    resident_memory: Gauge,
    open_fds: Gauge,
    /// Open client connections (HTTP), kept by the server.
    pub open_connections: Gauge<i64, AtomicI64>,
}

impl Process {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of the process",
            self.resident_memory.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process",
            self.open_fds.clone(),
        );
        registry.register(
            "coupon_open_connections",
            "Open HTTP client connections",
            self.open_connections.clone(),
        );
    }

    /// Reads the figures from `/proc/self` (Linux; elsewhere they stay 0).
    pub fn refresh(&self) {
        if let Some(kib) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<i64>()
                            .ok()
                    })
            })
        {
            self.resident_memory.set(kib * 1024);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(entries.count() as i64);
        }
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
    fn process_figures_are_read() {
        let process = Process::default();
        let mut registry = Registry::default();
        process.register(&mut registry);
        process.refresh();
        let text = render(&registry);
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(rss > 1024.0 * 1024.0, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
