//! Per-request cost of a shared decision on Redis, beside the in-memory decision and beside a bare
//! `INCR` round trip to the same Redis through the same driver: each request timed alone, the
//! cases interleaved in rounds so drift on a shared machine hits them alike; p50 and p99.
//!
//! ```sh
//! TOWER_WEBHOOKS_REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench shared_state --features redis
//! ```

use std::time::{Duration, Instant};

use http::Request;
use tower_webhooks::auth::AuthLockout;
use tower_webhooks::auth::LockoutConfig;
use tower_webhooks::client_ip::ClientIp;
use tower_webhooks::in_flight::{InFlightConfig, InFlightLimiter};
use tower_webhooks::keyed::{SlotStore, WindowStore};
use tower_webhooks::rate_limit::{FixedWindowLimiter, RateLimitConfig};
use tower_webhooks::redis::{
    RedisLockoutStore, RedisSlotStore, RedisState, RedisWindowStore, SharedStateConfig,
};

const ROUNDS: usize = 10;
const PER_ROUND: usize = 2_000;

fn main() {
    let Ok(url) = std::env::var("TOWER_WEBHOOKS_REDIS_URL") else {
        println!("skipped: TOWER_WEBHOOKS_REDIS_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&url));
}

async fn run(url: &str) {
    let prefix = format!("tw-bench:{}:", std::process::id());
    let config = SharedStateConfig::new()
        .key_prefix(&prefix)
        .timeout(Duration::from_secs(1));
    let shared = RedisState::connect(url, config).await.expect("Redis");
    let open = RateLimitConfig::new().max_requests(u32::MAX);
    let memory = FixedWindowLimiter::new(open);
    let windows = RedisWindowStore::new(shared.clone(), FixedWindowLimiter::new(open));
    let lockout = RedisLockoutStore::new(shared.clone(), AuthLockout::new(LockoutConfig::new()));
    let slots = RedisSlotStore::new(
        shared.clone(),
        InFlightLimiter::new(InFlightConfig::new().max_per_key(u32::MAX)),
    )
    .reading_lockout(lockout);
    let mut request = Request::post("/plugins/webhooks/bench").body(()).unwrap();
    request
        .extensions_mut()
        .insert(ClientIp::new([203, 0, 113, 7].into()));
    let mut bare = redis::Client::open(url)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let incr_key = format!("{prefix}incr");

    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let hit = WindowStore::hit(&memory, 1).await.unwrap();
            samples[0].push(start.elapsed());
            std::hint::black_box(hit);
        }
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let hit = windows.hit(1).await.unwrap();
            samples[1].push(start.elapsed());
            std::hint::black_box(hit);
        }
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let lease = slots.acquire_for(2, &request).await.unwrap().unwrap();
            samples[2].push(start.elapsed());
            drop(lease);
        }
        for _ in 0..PER_ROUND {
            let start = Instant::now();
            let n: u64 = redis::cmd("INCR")
                .arg(&incr_key)
                .query_async(&mut bare)
                .await
                .unwrap();
            samples[3].push(start.elapsed());
            std::hint::black_box(n);
        }
    }
    assert_eq!(shared.fallbacks(), 0, "every decision was taken on Redis");
    let _: () = redis::cmd("DEL")
        .arg(&incr_key)
        .arg(format!("{prefix}rl:{:016x}", 1u64))
        .query_async(&mut bare)
        .await
        .unwrap();

    let bare_p50 = percentile(&mut samples[3], 50);
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        "case", "p50", "p99", "p50 / INCR"
    );
    for (name, times) in [
        "in-memory window (FixedWindowLimiter)",
        "Redis window (one script)",
        "Redis slot + lockout read (one script)",
        "bare INCR round trip (same driver)",
    ]
    .into_iter()
    .zip(samples.iter_mut())
    {
        let p50 = percentile(times, 50);
        let p99 = percentile(times, 99);
        println!(
            "{name:<44} {:>10} {:>10} {:>11.2}x",
            show(p50),
            show(p99),
            p50.as_secs_f64() / bare_p50.as_secs_f64()
        );
    }
}

fn percentile(times: &mut [Duration], p: usize) -> Duration {
    times.sort_unstable();
    times[(times.len() * p / 100).min(times.len() - 1)]
}

fn show(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{} ns", d.as_nanos())
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}
