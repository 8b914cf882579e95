//! Prometheus metrics in the text exposition format: counters for seals, opens,
//! unwraps, rotations, rewraps and errors by code, and latency histograms. Labels
//! hold route templates and error codes only, never ids or content.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets (seconds).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let n = bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Recordings sealed (ingested as envelopes).
    pub seals: Counter,
    /// Decrypted reads (full content or ranges).
    pub opens: Counter,
    /// DEK unwraps with a private KEK.
    pub unwraps: Counter,
    /// Browser playback grants issued (the LKM unwraps for the browser).
    pub grants: Counter,
    /// KEK rotations (scheduled or on demand).
    pub rotations: Counter,
    /// Recordings moved to another KEK by rewrap jobs.
    pub rewrapped: Counter,
    /// Recordings written out by export jobs.
    pub exported: Counter,
    /// Playback requests served by a DEK already unwrapped for that playback.
    pub dek_cache_hits: Counter,
    /// Time to ingest and seal one upload.
    pub seal_seconds: Histogram,
    /// Time to unwrap one DEK.
    pub unwrap_seconds: Histogram,
    /// Time to open and send one decrypted read.
    pub open_seconds: Histogram,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_seconds: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Counts an error response by its code.
    pub fn error(&self, code: &'static str) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(code).or_default() += 1;
    }

    /// Records one HTTP request by route template and status.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            *requests.entry((route.to_string(), status)).or_default() += 1;
        }
        let mut hist = self
            .request_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        hist.entry(route.to_string()).or_default().observe(elapsed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, counter) in [
            ("tapeseal_seals_total", "Recordings sealed.", &self.seals),
            (
                "tapeseal_opens_total",
                "Decrypted reads served.",
                &self.opens,
            ),
            ("tapeseal_unwraps_total", "DEKs unwrapped.", &self.unwraps),
            (
                "tapeseal_grants_total",
                "Browser playback grants issued.",
                &self.grants,
            ),
            (
                "tapeseal_rotations_total",
                "KEK rotations.",
                &self.rotations,
            ),
            (
                "tapeseal_rewrapped_total",
                "Recordings moved to another KEK.",
                &self.rewrapped,
            ),
            (
                "tapeseal_exported_total",
                "Recordings written out by export jobs.",
                &self.exported,
            ),
            (
                "tapeseal_playback_dek_cache_hits_total",
                "Playback requests that reused the DEK unwrapped for their playback.",
                &self.dek_cache_hits,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.get());
        }
        let _ = writeln!(
            out,
            "# HELP tapeseal_errors_total Error responses by code.\n# TYPE tapeseal_errors_total counter"
        );
        for (code, n) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tapeseal_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP tapeseal_http_requests_total HTTP requests by route and status.\n# TYPE tapeseal_http_requests_total counter"
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tapeseal_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        for (name, help, hist) in [
            (
                "tapeseal_seal_seconds",
                "Time to ingest and seal an upload.",
                &self.seal_seconds,
            ),
            (
                "tapeseal_unwrap_seconds",
                "Time to unwrap a DEK.",
                &self.unwrap_seconds,
            ),
            (
                "tapeseal_open_seconds",
                "Time to open and send a decrypted read.",
                &self.open_seconds,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            hist.render(&mut out, name, "");
        }
        let name = "tapeseal_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram"
        );
        for (route, hist) in self
            .request_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hist.render(&mut out, name, &format!("route=\"{route}\""));
        }
        out
    }
}
