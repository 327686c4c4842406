//! The keyed-state module on its own: the stable keyed hash and the sharded LRU map, without any
//! layer around them, so a change to either shows here before it shows in a limiter.
//!
//! ```sh
//! cargo bench --bench keyed_state
//! ```

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower_webhooks::keyed::{Keep, KeyHasher, ShardedLru, WhenFull};

/// Keys as the limiters make them: a route path and a client IP.
fn keys(count: u32) -> Vec<u64> {
    let hasher = KeyHasher::default();
    (0..count)
        .map(|i| {
            let mut material = hasher.material();
            material.str("/plugins/webhooks/zapier");
            material.ip(IpAddr::from((0xcb00_7100u32 + i).to_be_bytes()));
            material.finish()
        })
        .collect()
}

fn hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_state/hash");
    let hasher = KeyHasher::default();
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    group.bench_function("path + IPv4", |b| {
        b.iter(|| {
            let mut material = hasher.material();
            material.str(black_box("/plugins/webhooks/zapier"));
            material.ip(black_box(ip));
            material.finish()
        })
    });
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    group.bench_function("path + IPv6", |b| {
        b.iter(|| {
            let mut material = hasher.material();
            material.str(black_box("/plugins/webhooks/zapier"));
            material.ip(black_box(v6));
            material.finish()
        })
    });
    group.finish();
}

fn map(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_state/map");
    // Hit: the key is there (the rate limiter's steady state).
    let lru = ShardedLru::new(4_096, WhenFull::EvictLeastRecent);
    let resident = keys(4_096);
    for &key in &resident {
        lru.shard(key).insert_with(key, || 0u32, |_| true).unwrap();
    }
    let mut at = 0;
    group.bench_function("hit (resident key, evicting map)", |b| {
        b.iter(|| {
            let key = resident[at % resident.len()];
            at += 1;
            let mut shard = lru.shard(key);
            *shard.insert_with(key, || 0, |_| true).unwrap() += 1;
        })
    });
    // Insert into a full map: every new key evicts the least recently touched of its shard.
    let fresh = keys(1 << 20);
    let mut next = 0;
    group.bench_function("insert + evict (new key, full map)", |b| {
        b.iter(|| {
            let key = fresh[next % fresh.len()];
            next += 1;
            lru.shard(key).insert_with(key, || 0u32, |_| true).unwrap();
        })
    });
    // Eviction that skips kept entries: the lockout's rule, with a quarter of the shard locked.
    group.bench_function("64 inserts, evicting past kept entries", |b| {
        b.iter_batched(
            || {
                let map = ShardedLru::new(64, WhenFull::EvictLeastRecent);
                for (i, &key) in resident[..64].iter().enumerate() {
                    let locked = i < 16;
                    map.shard(key)
                        .insert_with(key, || locked, |_| true)
                        .unwrap();
                }
                map
            },
            |map| {
                for &key in &fresh[..64] {
                    map.shard(key)
                        .insert_with(key, || false, |locked| !*locked)
                        .unwrap();
                }
                map
            },
            BatchSize::SmallInput,
        )
    });
    // Acquire and release: the in-flight limiter's fail-closed map, one key coming and going.
    let refusing = ShardedLru::new(4_096, WhenFull::Refuse);
    let key = resident[0];
    group.bench_function("acquire + release (refusing map)", |b| {
        b.iter(|| {
            *refusing
                .shard(black_box(key))
                .insert_with(key, || 0u32, |_| false)
                .unwrap() += 1;
            refusing.shard(key).update_or_remove(key, |count| {
                *count -= 1;
                if *count == 0 { Keep::No } else { Keep::Yes }
            });
        })
    });
    group.finish();
}

criterion_group!(benches, hash, map);
criterion_main!(benches);
