//! The table rows the store benchmarks print: median and p99 of per-call timings, in µs.

use std::time::Duration;

/// The median and the 99th percentile of `samples`, in µs.
pub fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

/// One Markdown table row: `name`, padded to `width`, then the median and p99 of `samples`.
pub fn row(width: usize, name: &str, samples: Vec<Duration>) {
    let (p50, p99) = percentiles(samples);
    println!("| {name:<width$} | {p50:>10.1} | {p99:>10.1} |");
}
