//! Prometheus counters and gauges of the server, rendered as the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use mars::Usage;
use mars::eval::verify::VerifyCounts;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// Every figure `/metrics` reports. Cheap to update: atomics, and one small map for the
/// per-strategy request counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    model_calls: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    upstream_errors: AtomicU64,
    in_flight: AtomicI64,
    queue_depth: AtomicI64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Code strategies' checks, summed over requests, by [`VERIFY_KINDS`].
    verification: Mutex<BTreeMap<&'static str, u64>>,
    sandbox_runs_in_flight: AtomicI64,
}

/// The figures of `mars_verifier_total`, by `kind` label.
const VERIFY_KINDS: [&str; 10] = [
    "candidates",
    "candidates_compiled",
    "candidates_passed",
    "example_runs",
    "example_passes",
    "generated_tests_run",
    "generated_tests_passed",
    "over_budget",
    "sandbox_errors",
    "requests",
];

impl Metrics {
    /// Counts a finished request (its head sent) on `route` with `strategy` and `status`, and
    /// its latency to the response head.
    pub fn record_request(&self, route: &str, strategy: &str, status: u16, latency: Duration) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route.to_owned(), strategy.to_owned(), status))
                .or_default() += 1;
        }
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one upstream model call.
    pub fn model_call(&self) {
        self.model_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the tokens one upstream call reported.
    pub fn tokens(&self, usage: &Usage) {
        if let Some(n) = usage.prompt_tokens {
            self.prompt_tokens.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(n) = usage.completion_tokens {
            self.completion_tokens.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts an upstream call that failed.
    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests being served now (admitted, response not finished).
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Moves the in-flight gauge by `delta`.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Moves the queue-depth gauge (upstream calls waiting for a permit) by `delta`.
    pub fn add_queued(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one request's verification counts.
    pub fn verification(&self, counts: &VerifyCounts) {
        let values = [
            counts.candidates,
            counts.candidates_compiled,
            counts.candidates_passed,
            counts.example_runs,
            counts.example_passes,
            counts.generated_tests_run,
            counts.generated_tests_passed,
            counts.over_budget,
            counts.sandbox_errors,
            1,
        ];
        if let Ok(mut map) = self.verification.lock() {
            for (kind, value) in VERIFY_KINDS.iter().zip(values) {
                *map.entry(kind).or_default() += u64::from(value);
            }
        }
    }

    /// Sets the gauge of sandbox runs in flight (read when `/metrics` is rendered).
    pub fn set_sandbox_runs(&self, runs: usize) {
        self.sandbox_runs_in_flight
            .store(i64::try_from(runs).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Upstream model calls made so far.
    pub fn model_calls(&self) -> u64 {
        self.model_calls.load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mars_requests_total Requests answered, by route, strategy and status.\n\
             # TYPE mars_requests_total counter\n",
        );
        if let Ok(map) = self.requests.lock() {
            for ((route, strategy, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "mars_requests_total{{route=\"{}\",strategy=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(strategy)
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        counter(
            &mut out,
            "mars_model_calls_total",
            "Upstream model calls made by strategies and relays.",
            self.model_calls(),
        );
        out.push_str(
            "# HELP mars_tokens_total Tokens reported by the upstream, by kind.\n\
             # TYPE mars_tokens_total counter\n",
        );
        let _ = writeln!(
            out,
            "mars_tokens_total{{kind=\"prompt\"}} {}",
            self.prompt_tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "mars_tokens_total{{kind=\"completion\"}} {}",
            self.completion_tokens.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "mars_upstream_errors_total",
            "Upstream calls that failed.",
            self.upstream_errors.load(Ordering::Relaxed),
        );
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        };
        gauge(
            &mut out,
            "mars_requests_in_flight",
            "Requests admitted whose response has not finished.",
            self.in_flight(),
        );
        gauge(
            &mut out,
            "mars_queue_depth",
            "Upstream calls waiting for a --max-concurrency permit.",
            self.queue_depth.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "mars_sandbox_runs_in_flight",
            "Code strategies' sandbox runs (compile and tests) in flight.",
            self.sandbox_runs_in_flight.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP mars_verifier_total Code strategies' checks of candidates, by kind \
             (requests verified; candidates checked, compiled, passed; example and generated \
             test runs and passes; checks refused over the sandbox budget; sandbox failures).\n\
             # TYPE mars_verifier_total counter\n",
        );
        if let Ok(map) = self.verification.lock() {
            for kind in VERIFY_KINDS {
                let _ = writeln!(
                    out,
                    "mars_verifier_total{{kind=\"{kind}\"}} {}",
                    map.get(kind).copied().unwrap_or(0)
                );
            }
        }
        out.push_str(
            "# HELP mars_request_duration_seconds Time to the response head.\n\
             # TYPE mars_request_duration_seconds histogram\n",
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "mars_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "mars_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "mars_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "mars_request_duration_seconds_count {count}");
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.record_request("openai", "moa", 200, Duration::from_millis(3));
        metrics.record_request("openai", "moa", 200, Duration::from_millis(700));
        metrics.model_call();
        metrics.tokens(&Usage {
            prompt_tokens: Some(7),
            completion_tokens: Some(2),
            ..Usage::default()
        });
        let text = metrics.render();
        assert!(
            text.contains(
                "mars_requests_total{route=\"openai\",strategy=\"moa\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("mars_tokens_total{kind=\"prompt\"} 7"));
        assert!(text.contains("mars_model_calls_total 1"));
        assert!(text.contains("mars_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("mars_request_duration_seconds_bucket{le=\"1\"} 2"));
        assert!(text.contains("mars_request_duration_seconds_count 2"));
    }
}
