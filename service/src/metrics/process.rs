//! The process's own figures under the names every Prometheus client library exposes
//! (`process_cpu_seconds_total`, `process_start_time_seconds`, `process_max_fds`,
//! `process_open_fds`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`), so
//! stock dashboards and alerts work unchanged. Read from `/proc/self` (Linux); elsewhere, or
//! when a file cannot be read, the series it feeds is left out rather than shown as 0.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every architecture Linux
/// runs these services on, whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of `/proc/self`; `None` where the figure could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Figures {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub max_fds: Option<f64>,
    pub open_fds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
}

impl Figures {
    /// Reads the figures now.
    pub fn read() -> Figures {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().map(stat_fields).unwrap_or_default();
        let field = |i: usize| stat.get(i).and_then(|v| v.parse::<f64>().ok());
        // Fields counted from 3 (`state`), the first after the command name.
        let (start_ticks, vsize) = (field(19), field(20));
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| first_number(&text, "btime"));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Figures {
            cpu_seconds: cpu_seconds_of(&stat),
            start_time_seconds: boot_time
                .zip(start_ticks)
                .map(|(boot, ticks)| boot + ticks / TICKS_PER_SECOND),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| first_number(&text, "Max open files")),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            resident_memory_bytes: first_number(&status, "VmRSS:").map(|kib| kib * 1024.0),
            virtual_memory_bytes: vsize,
        }
    }
}

/// User and system CPU time of process `pid` ("self" for this one) so far, in seconds, from
/// `/proc/<pid>/stat`: every thread's, including threads that already ended.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_of(&stat_fields(&stat))
}

fn cpu_seconds_of(stat: &[&str]) -> Option<f64> {
    let field = |i: usize| stat.get(i).and_then(|v| v.parse::<f64>().ok());
    // Fields counted from 3 (`state`), the first after the command name.
    let (utime, stime) = (field(11), field(12));
    utime.zip(stime).map(|(u, s)| (u + s) / TICKS_PER_SECOND)
}

/// The fields of `/proc/<pid>/stat` after the command name, which may itself hold spaces and
/// parentheses (it ends at the last `)`).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// The first number after `prefix` on the line that starts with it (`unlimited` is none).
fn first_number(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Encodes the latest [`Figures`] at each scrape.
#[derive(Debug, Default, Clone)]
pub(super) struct ProcessCollector(pub Arc<Mutex<Figures>>);

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(seconds) = figures.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            // The encoder appends `_total` to a counter's samples.
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                figures.start_time_seconds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                figures.max_fds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                figures.open_fds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                figures.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                figures.virtual_memory_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_parentheses_does_not_shift_the_fields() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 4 0 1234 \
                    8192000 300 18446744073709551615";
        let fields = stat_fields(stat);
        assert_eq!(fields[0], "S");
        assert_eq!((fields[11], fields[12]), ("250", "50"));
        assert_eq!((fields[19], fields[20]), ("1234", "8192000"));
        assert_eq!(cpu_seconds_of(&fields), Some(3.0), "(250 + 50) ticks");
    }

    #[test]
    fn cpu_time_is_read_for_a_process_and_none_for_a_missing_one() {
        let before = cpu_seconds("self").expect("this process's stat");
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let after = cpu_seconds("self").expect("this process's stat");
        assert!(after >= before, "{before} then {after}");
        assert_eq!(cpu_seconds("0"), None, "no process 0 in /proc");
    }

    #[test]
    fn an_unlimited_limit_is_no_figure() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            unlimited            unlimited            files\n";
        assert_eq!(first_number(limits, "Max open files"), None);
        let limits = limits.replace("unlimited            unlimited", "1024 4096");
        assert_eq!(first_number(&limits, "Max open files"), Some(1024.0));
    }
}
