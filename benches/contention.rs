//! The rate-limit counter under contention: `FixedWindowLimiter::hit_at` from 1 and 2 threads on 1,
//! 1,024 and 100,000 distinct keys (100,000 is past the 4,096-key cap, so that case also measures
//! eviction churn, as under a flood of distinct clients).
//!
//! Reported time is per hit, per thread.
//!
//! `cargo bench --bench contention -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tower_webhooks::rate_limit::{FixedWindowLimiter, RateLimitConfig};

fn limiter() -> FixedWindowLimiter {
    FixedWindowLimiter::new(
        RateLimitConfig::new()
            .window(Duration::MAX)
            .max_requests(u32::MAX),
    )
}

/// `iters` hits spread over `keys` hashed keys, on each of `threads` threads; the slowest thread's
/// time, divided per hit.
fn run(limiter: &FixedWindowLimiter, keys: &[u64], threads: usize, iters: u64) -> Duration {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let start = Instant::now();
                    for i in 0..iters {
                        let key = keys[(i as usize + t * 7919) % keys.len()];
                        black_box(limiter.hit_at(key, 1).is_ok());
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_contention");
    for key_count in [1usize, 1_024, 100_000] {
        for threads in [1usize, 2] {
            let limiter = limiter();
            let keys: Vec<u64> = (0..key_count as u64).map(|k| limiter.hash(&k)).collect();
            group.bench_with_input(
                BenchmarkId::new(format!("{threads} thread(s)"), key_count),
                &keys,
                |b, keys| b.iter_custom(|iters| run(&limiter, keys, threads, iters)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
