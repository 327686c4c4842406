//! Shared state on Redis (SPEC §7): two gateway processes on one Redis count as one, a killed
//! replica's slots come back, Redis going away and coming back, the round trips a request pays,
//! and the Redis window deciding as the in-memory one does.
//!
//! Gated on `TOWER_WEBHOOKS_REDIS_URL` (the machine's Redis): unset, each test prints one line
//! saying it was skipped and returns; set but unreachable, it fails. Every test counts under a
//! key prefix of its own. The tests that stop Redis start a `redis-server` of their own on a free
//! port and in a directory of their own, so the machine's Redis is never touched.

#[path = "support/backends.rs"]
mod backends;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::Request;
use proptest::prelude::*;
use support::gateway_process::Subprocess;
use support::temp::TempDir;
use support::{RawResponse, connect, connect_from, post_bytes, raw, read_response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower_webhooks::body::BufferedBody;
use tower_webhooks::clock::ManualClock;
use tower_webhooks::config::WebhooksConfig;
use tower_webhooks::gateway::Gateway;
use tower_webhooks::keyed::{KeyExtractor, KeyHasher, NormalizedPathAndPeerIp, WindowStore};
use tower_webhooks::rate_limit::{FixedWindowLimiter, RateLimitConfig};
use tower_webhooks::redis::{RedisState, RedisWindowStore, SharedStateConfig};

const SECRET: &str = "shared-state-secret";
const PATH: &str = "/plugins/webhooks/zap";
const LIST: &[u8] = br#"{"action":"list_flows"}"#;

use backends::redis_url;

/// A key prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tw-test:{test}:{}:{nanos}:", std::process::id())
}

async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("TOWER_WEBHOOKS_REDIS_URL is set but Redis is unreachable: {e}"))
}

/// A config with one route `zap`, `sharedState` as given, and `limits`.
fn config(dir: &TempDir, shared_state: &str, limits: &str) -> PathBuf {
    let text = format!(
        r#"{{ routes: {{ zap: {{ sessionKey: "agent:main:main", secret: "{SECRET}" }} }},
             sharedState: {shared_state}, limits: {{ {limits} }} }}"#
    );
    dir.file("webhooks.json5", text, 0o600)
}

fn shared(url: &str, prefix: &str, more: &str) -> String {
    format!(r#"{{ url: "{url}", keyPrefix: "{prefix}" {more} }}"#)
}

async fn gateway(config: &Path) -> (Subprocess, SocketAddr) {
    let mut process = Subprocess::start(Subprocess::command(Some(config)));
    let addr = process.listening().await;
    (process, addr)
}

fn request(secret: &str, body: &[u8]) -> Vec<u8> {
    post_bytes(
        PATH,
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {secret}")),
        ],
        body,
    )
}

async fn post(addr: SocketAddr, secret: &str) -> RawResponse {
    raw(addr, &request(secret, LIST)).await
}

async fn post_from(addr: SocketAddr, source: IpAddr, secret: &str) -> RawResponse {
    let mut stream = connect_from(addr, source).await;
    stream.write_all(&request(secret, LIST)).await.unwrap();
    read_response(&mut stream).await
}

fn assert_status(response: &RawResponse, status: u16, text: &str) {
    assert_eq!(
        (response.status, response.text().as_str()),
        (status, text),
        "{:?}",
        response.headers
    );
}

/// A request that takes its in-flight slot and then holds it: the headers and half the body.
async fn hold(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    let whole = request(SECRET, LIST);
    stream
        .write_all(&whole[..whole.len() - LIST.len() / 2])
        .await
        .unwrap();
    stream
}

/// Sends the rest of a held request's body and reads its answer.
async fn finish(mut stream: TcpStream) -> RawResponse {
    stream
        .write_all(&LIST[LIST.len() - LIST.len() / 2..])
        .await
        .unwrap();
    read_response(&mut stream).await
}

/// The in-flight slot set of `PATH` from 127.0.0.1 under `prefix`.
fn slot_key(prefix: &str) -> String {
    let mut request = Request::post(PATH).body(()).unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let mut material = KeyHasher::default().material();
    NormalizedPathAndPeerIp::new().key_material(&request, &mut material);
    format!("{prefix}if:{:016x}", material.finish())
}

/// Leases held in `key` now (lapsed ones not counted).
async fn leases(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    redis::cmd("ZCOUNT")
        .arg(key)
        .arg(format!("({now}"))
        .arg("+inf")
        .query_async(redis)
        .await
        .unwrap()
}

/// Polls (every 20 ms, at most 20 s) until `key` holds `n` leases.
async fn wait_for_leases(redis: &mut redis::aio::MultiplexedConnection, key: &str, n: u64) {
    for _ in 0..1_000 {
        if leases(redis, key).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{key} never held {n} leases");
}

#[tokio::test]
async fn a_window_is_shared_by_two_gateways() {
    let Some(url) = redis_url("a_window_is_shared_by_two_gateways") else {
        return;
    };
    let dir = TempDir::new("shared-window");
    let prefix = prefix("window");
    let config = config(&dir, &shared(&url, &prefix, ""), "");
    let ((_a, a), (_b, b)) = (gateway(&config).await, gateway(&config).await);

    for (n, addr) in std::iter::repeat_n(a, 60)
        .chain(std::iter::repeat_n(b, 60))
        .enumerate()
    {
        let response = post(addr, SECRET).await;
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
    }
    let last = post(b, SECRET).await;
    assert_status(&last, 429, "Too Many Requests");
    let retry_after: u64 = last.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // And on A too: one window.
    assert_status(&post(a, SECRET).await, 429, "Too Many Requests");
}

#[tokio::test]
async fn in_flight_slots_are_shared_by_two_gateways() {
    let Some(url) = redis_url("in_flight_slots_are_shared_by_two_gateways") else {
        return;
    };
    let mut redis = client(&url).await;
    let dir = TempDir::new("shared-slots");
    let prefix = prefix("slots");
    let config = config(&dir, &shared(&url, &prefix, ""), "");
    let ((_a, a), (_b, b)) = (gateway(&config).await, gateway(&config).await);
    let key = slot_key(&prefix);

    let mut held = Vec::new();
    for addr in [a, b, a, b, a, b, a, b] {
        held.push(hold(addr).await);
    }
    wait_for_leases(&mut redis, &key, 8).await;
    for addr in [a, b] {
        let ninth = post(addr, SECRET).await;
        assert_status(&ninth, 429, "Too Many Requests");
        assert_eq!(ninth.header("retry-after"), Some("1"));
    }

    // One finishes: its slot comes back, on either replica.
    let first = held.remove(0);
    assert_eq!(finish(first).await.status, 200);
    wait_for_leases(&mut redis, &key, 7).await;
    assert_eq!(post(b, SECRET).await.status, 200);
    for stream in held {
        assert_eq!(finish(stream).await.status, 200);
    }
    wait_for_leases(&mut redis, &key, 0).await;
}

#[tokio::test]
async fn failures_on_two_gateways_lock_the_client_out_of_both() {
    let Some(url) = redis_url("failures_on_two_gateways_lock_the_client_out_of_both") else {
        return;
    };
    let dir = TempDir::new("shared-lockout");
    let prefix = prefix("lockout");
    let config = config(&dir, &shared(&url, &prefix, ""), "");
    let ((_a, a), (_b, b)) = (gateway(&config).await, gateway(&config).await);

    for addr in std::iter::repeat_n([a, b], 10).flatten() {
        assert_status(&post(addr, "wrong").await, 401, "unauthorized");
    }
    for addr in [a, b] {
        let refused = post(addr, SECRET).await;
        assert_status(&refused, 429, "Too Many Requests");
        let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    }
}

#[tokio::test]
async fn a_killed_replicas_slots_come_back_within_the_lease() {
    let Some(url) = redis_url("a_killed_replicas_slots_come_back_within_the_lease") else {
        return;
    };
    let mut redis = client(&url).await;
    let dir = TempDir::new("shared-kill");
    let prefix = prefix("kill");
    let lease = Duration::from_millis(2_000);
    let config = config(
        &dir,
        &shared(&url, &prefix, &format!(", leaseMs: {}", lease.as_millis())),
        "",
    );
    let ((mut a, a_addr), (_b, b)) = (gateway(&config).await, gateway(&config).await);
    let key = slot_key(&prefix);

    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(hold(a_addr).await);
    }
    wait_for_leases(&mut redis, &key, 8).await;
    // Longer than a lease with no byte from the clients: A renews its leases all the same.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    assert_eq!(leases(&mut redis, &key).await, 8);
    assert_status(&post(b, SECRET).await, 429, "Too Many Requests");

    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    // Nobody releases them now: they lapse, and B admits again.
    wait_for_leases(&mut redis, &key, 0).await;
    assert_eq!(post(b, SECRET).await.status, 200);
    drop(held);
}

/// A `redis-server` of the test's own, on a free port and in a directory of its own.
struct PrivateRedis {
    child: tokio::process::Child,
    port: u16,
    dir: TempDir,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, TempDir::new("redis-server")).await
    }

    async fn start_on(port: u16, dir: TempDir) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..500 {
            if let Ok(client) = redis::Client::open(url.as_str()) {
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                        .is_ok()
                    {
                        return Self { child, port, dir };
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {port} did not answer");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: as if the machine went away) and gives back what a restart needs.
    async fn stop(mut self) -> (u16, TempDir) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        (self.port, self.dir)
    }
}

#[tokio::test]
async fn redis_going_away_falls_back_to_local_budgets_and_coming_back_shares_again() {
    let Some(_) =
        redis_url("redis_going_away_falls_back_to_local_budgets_and_coming_back_shares_again")
    else {
        return;
    };
    let redis = PrivateRedis::start().await;
    let dir = TempDir::new("shared-local");
    let config = config(
        &dir,
        &shared(&redis.url(), &prefix("local"), ""),
        "rateLimit: { maxRequests: 3 }",
    );
    let ((mut a, a_addr), (mut b, b_addr)) = (gateway(&config).await, gateway(&config).await);
    let client = |n: u8| IpAddr::from([127, 0, 0, n]);

    // Shared: 3 on A use the budget B sees.
    for _ in 0..3 {
        assert_eq!(post_from(a_addr, client(2), SECRET).await.status, 200);
    }
    assert_status(
        &post_from(b_addr, client(2), SECRET).await,
        429,
        "Too Many Requests",
    );

    // Redis gone: no 5xx, and each replica counts its own budget of 3.
    let (port, redis_dir) = redis.stop().await;
    for addr in [a_addr, b_addr] {
        for _ in 0..3 {
            let response = post_from(addr, client(3), SECRET).await;
            assert_eq!(response.status, 200, "{}", response.text());
        }
        assert_status(
            &post_from(addr, client(3), SECRET).await,
            429,
            "Too Many Requests",
        );
    }
    a.wait_for("shared state unavailable").await;

    // Redis back (empty): both replicas notice by themselves and share again.
    let _redis = PrivateRedis::start_on(port, redis_dir).await;
    a.wait_for("shared state available again").await;
    b.wait_for("shared state available again").await;
    for _ in 0..3 {
        assert_eq!(post_from(a_addr, client(4), SECRET).await.status, 200);
    }
    assert_status(
        &post_from(b_addr, client(4), SECRET).await,
        429,
        "Too Many Requests",
    );
}

#[tokio::test]
async fn redis_going_away_with_reject_answers_503_until_it_comes_back() {
    let Some(_) = redis_url("redis_going_away_with_reject_answers_503_until_it_comes_back") else {
        return;
    };
    let redis = PrivateRedis::start().await;
    let dir = TempDir::new("shared-reject");
    let config = config(
        &dir,
        &shared(
            &redis.url(),
            &prefix("reject"),
            r#", onUnavailable: "reject""#,
        ),
        "",
    );
    let (mut a, addr) = gateway(&config).await;
    let ready = || raw(addr, b"GET /readyz HTTP/1.1\r\nhost: test\r\n\r\n");
    assert_eq!(post(addr, SECRET).await.status, 200);
    assert_status(&ready().await, 200, "ready");

    let (port, redis_dir) = redis.stop().await;
    let refused = post(addr, SECRET).await;
    assert_status(&refused, 503, "Service Unavailable");
    assert_eq!(
        refused.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_status(&ready().await, 503, "not ready: redis: unavailable");

    let _redis = PrivateRedis::start_on(port, redis_dir).await;
    a.wait_for("shared state available again").await;
    assert_eq!(post(addr, SECRET).await.status, 200);
    assert_status(&ready().await, 200, "ready");
}

/// A TCP proxy in front of Redis that counts the commands its clients send: each is one round
/// trip (RESP arrays; the stores never pipeline).
struct CountingProxy {
    addr: SocketAddr,
    commands: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = std::sync::Arc::clone(&commands);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counted = std::sync::Arc::clone(&counted);
                tokio::spawn(async move {
                    let server = TcpStream::connect(upstream).await.unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut parser = RespCounter::default();
                    let mut chunk = [0u8; 4096];
                    loop {
                        use tokio::io::AsyncReadExt;
                        let n = match client_read.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let complete = parser.feed(&chunk[..n]);
                        counted.fetch_add(complete, std::sync::atomic::Ordering::SeqCst);
                        if server_write.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, commands }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn take(&self) -> u64 {
        self.commands.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

/// Counts complete RESP commands (`*<n>` then `n` bulk strings) in a byte stream.
#[derive(Default)]
struct RespCounter {
    buffer: Vec<u8>,
}

impl RespCounter {
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.buffer.extend_from_slice(bytes);
        let mut complete = 0;
        while let Some(used) = Self::command_length(&self.buffer) {
            self.buffer.drain(..used);
            complete += 1;
        }
        complete
    }

    fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = bytes[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&bytes[at..end], end + 2))
    }

    fn command_length(bytes: &[u8]) -> Option<usize> {
        let (header, mut at) = Self::line(bytes, 0)?;
        let items: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
            .ok()?
            .parse()
            .ok()?;
        for _ in 0..items {
            let (length, after) = Self::line(bytes, at)?;
            let length: usize = std::str::from_utf8(length.strip_prefix(b"$")?)
                .ok()?
                .parse()
                .ok()?;
            at = after + length + 2;
            if at > bytes.len() {
                return None;
            }
        }
        Some(at)
    }
}

#[tokio::test]
async fn each_request_pays_the_round_trips_up_to_its_decision_and_no_more() {
    let Some(url) = redis_url("each_request_pays_the_round_trips_up_to_its_decision_and_no_more")
    else {
        return;
    };
    let mut redis = client(&url).await;
    let upstream = redis::Client::open(url.as_str()).unwrap();
    let upstream = match upstream.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .unwrap()
            .next()
            .unwrap(),
        other => panic!("a TCP Redis is needed to count round trips, not {other:?}"),
    };
    let proxy = CountingProxy::start(upstream).await;
    let dir = TempDir::new("round-trips");
    let prefix = prefix("trips");
    let config = config(
        &dir,
        &shared(&proxy.url(), &prefix, ""),
        "rateLimit: { maxRequests: 2 }",
    );
    let (gateway, _) = Gateway::from_file(&config).unwrap();
    let gateway = gateway.share_state(None).await.unwrap();
    let router = gateway.router();
    let send = |method: &str, content_type: &str, secret: &str, peer: [u8; 4]| {
        let mut request = Request::builder()
            .method(method)
            .uri(PATH)
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {secret}"))
            .body(BufferedBody::from(bytes::Bytes::from_static(LIST)))
            .unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from((peer, 40_000)));
        router.clone().oneshot(request)
    };
    let trips = |response: http::Response<_>| {
        let status = response.status().as_u16();
        drop(response);
        (status, proxy.take())
    };
    let json = "application/json";

    proxy.take(); // connecting and loading the scripts
    let response = send("GET", json, SECRET, [127, 0, 0, 1]).await.unwrap();
    assert_eq!(trips(response), (405, 0), "405: none");

    let response = send("POST", "text/plain", SECRET, [127, 0, 0, 1])
        .await
        .unwrap();
    assert_eq!(trips(response), (415, 1), "415: the window");

    let response = send("POST", json, SECRET, [127, 0, 0, 1]).await.unwrap();
    let (status, before_release) = trips(response);
    assert_eq!(
        (status, before_release),
        (200, 2),
        "accepted: the window, then the slot and the lockout together"
    );
    // Then the release, which nobody waits for.
    let mut released = 0;
    for _ in 0..500 {
        released += proxy.take();
        if released > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(released, 1, "and one release (ZREM)");

    let response = send("POST", json, SECRET, [127, 0, 0, 1]).await.unwrap();
    assert_eq!(
        trips(response),
        (429, 1),
        "the rate limit's 429: the window"
    );

    // The in-flight limit's 429: every slot of the key taken (by leases of nobody's).
    let mut request = Request::post(PATH).body(()).unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 5], 40_000)));
    let mut material = KeyHasher::default().material();
    NormalizedPathAndPeerIp::new().key_material(&request, &mut material);
    let full = format!("{prefix}if:{:016x}", material.finish());
    for n in 0..8 {
        redis::cmd("ZADD")
            .arg(&full)
            .arg(u64::MAX >> 12)
            .arg(format!("nobody:{n}"))
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
    }
    let response = send("POST", json, SECRET, [127, 0, 0, 5]).await.unwrap();
    assert_eq!(
        trips(response),
        (429, 2),
        "the in-flight 429: the window, the slot"
    );

    let response = send("POST", json, "wrong", [127, 0, 0, 6]).await.unwrap();
    let (status, before_release) = trips(response);
    assert_eq!(
        (status, before_release),
        (401, 3),
        "401: the window, the slot and lockout, the failure on record"
    );
}

/// The lockout and slot keys and windows, as the accepted requests above left them: every key
/// under the prefix expires.
#[tokio::test]
async fn every_key_expires_and_has_a_fixed_length() {
    let Some(url) = redis_url("every_key_expires_and_has_a_fixed_length") else {
        return;
    };
    let mut redis = client(&url).await;
    let dir = TempDir::new("shared-keys");
    let prefix = prefix("keys");
    let config = config(&dir, &shared(&url, &prefix, ""), "");
    let (mut a, addr) = gateway(&config).await;
    assert_eq!(post(addr, SECRET).await.status, 200);
    // Its slot is released after the answer, by a command nobody waits for.
    wait_for_leases(&mut redis, &slot_key(&prefix), 0).await;
    let held = hold(addr).await;
    wait_for_leases(&mut redis, &slot_key(&prefix), 1).await;
    assert_eq!(post(addr, "wrong").await.status, 401);

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut spaces: Vec<&str> = keys
        .iter()
        .map(|key| &key[prefix.len()..prefix.len() + 2])
        .collect();
    spaces.sort_unstable();
    assert_eq!(spaces, ["af", "if", "rl"], "{keys:?}");
    for key in &keys {
        assert_eq!(key.len(), prefix.len() + 3 + 16, "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
    drop(held);
    a.child.start_kill().unwrap();
}

#[tokio::test]
async fn a_key_left_without_expiry_is_repaired_by_the_next_hit() {
    let Some(url) = redis_url("a_key_left_without_expiry_is_repaired_by_the_next_hit") else {
        return;
    };
    let mut redis = client(&url).await;
    let prefix = prefix("repair");
    let state = RedisState::connect(&url, SharedStateConfig::new().key_prefix(&prefix))
        .await
        .unwrap();
    let store = RedisWindowStore::new(
        state,
        FixedWindowLimiter::new(RateLimitConfig::new().max_requests(5)),
    );
    let key = format!("{prefix}rl:{:016x}", 7u64);
    redis::cmd("SET")
        .arg(&key)
        .arg(3)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let hit = store.hit(7).await.unwrap();
    assert_eq!((hit.count, hit.resets_in_ms), (4, 60_000));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
}

#[derive(Clone, Debug)]
enum Step {
    Hit,
    Wait(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(Step::Hit),
            1 => (0u64..12_000).prop_map(Step::Wait),
        ],
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// For the same hits at the same clock readings, the Redis window and the in-memory window
    /// count the same, refuse the same requests and give the same time left.
    #[test]
    fn the_redis_window_decides_as_the_in_memory_window(steps in steps()) {
        let Some(url) = redis_url("the_redis_window_decides_as_the_in_memory_window") else {
            return Ok(());
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let config = RateLimitConfig::new()
                .max_requests(3)
                .window(Duration::from_secs(10));
            let memory = FixedWindowLimiter::with_clock(config, ManualClock::new(0));
            let state = RedisState::connect(
                &url,
                SharedStateConfig::new().key_prefix(prefix("property")),
            )
            .await
            .unwrap();
            let redis = RedisWindowStore::new(state, FixedWindowLimiter::new(config));
            // Readings from now on, so Redis's own expiry never runs ahead of them.
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let mut now = 0;
            for (n, step) in steps.iter().enumerate() {
                match step {
                    Step::Wait(ms) => now += ms,
                    Step::Hit => {
                        let in_memory = memory.hit_at(1, now);
                        let shared = redis.hit_at(1, base + now).await.unwrap();
                        prop_assert_eq!(
                            in_memory.err().map(|limited| limited.retry_after_ms),
                            shared.limited().map(|limited| limited.retry_after_ms),
                            "step {} at {}", n, now
                        );
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn shared_state_config_errors_name_the_key_and_never_the_url() {
    let cases = [
        (
            r#""http://user:hunter2@cache:6379""#,
            "webhooks.sharedState: must be a redis:// URL (the only shared-state backend)",
        ),
        (r#""""#, "webhooks.sharedState: must not be empty"),
        (
            "42",
            "webhooks.sharedState: must be a string or a SecretRef object",
        ),
        (
            r#"{ keyPrefix: "x:" }"#,
            "webhooks.sharedState.url: is required",
        ),
        (
            r#"{ url: "redis://h", keyPrefix: "" }"#,
            "webhooks.sharedState.keyPrefix: must not be empty",
        ),
        (
            r#"{ url: "redis://h", onUnavailable: "maybe" }"#,
            r#"webhooks.sharedState.onUnavailable: must be "local" or "reject""#,
        ),
        (
            r#"{ url: "redis://h", timeoutMs: 0 }"#,
            "webhooks.sharedState.timeoutMs: must be an integer from 1 to 10000",
        ),
        (
            r#"{ url: "redis://h", timeoutMs: 10001 }"#,
            "webhooks.sharedState.timeoutMs: must be an integer from 1 to 10000",
        ),
        (
            r#"{ url: "redis://h", leaseMs: 99 }"#,
            "webhooks.sharedState.leaseMs: must be an integer from 100 to 30000",
        ),
        (
            r#"{ url: "redis://h", leaseMs: 30001 }"#,
            "webhooks.sharedState.leaseMs: must be an integer from 100 to 30000",
        ),
        (
            r#"{ url: "redis://h", leaseMs: "1000" }"#,
            "webhooks.sharedState.leaseMs: must be an integer from 100 to 30000",
        ),
        (
            r#"{ url: "redis://h", db: 1 }"#,
            "webhooks.sharedState.db: unknown key",
        ),
        (
            r#"{ url: { source: "env", provider: "default" } }"#,
            "webhooks.sharedState.url.id: is required",
        ),
    ];
    for (value, expected) in cases {
        let text = format!("{{ routes: {{}}, sharedState: {value} }}");
        let error = WebhooksConfig::from_json5(&text).expect_err(value);
        assert_eq!(error.to_string(), expected, "{value}");
        assert!(!error.to_string().contains("hunter2"));
    }
    for value in [
        r#""redis://127.0.0.1:6379""#,
        r#"{ source: "env", provider: "default", id: "REDIS_URL" }"#,
        r#"{ url: "redis://h", keyPrefix: "a:", onUnavailable: "reject", timeoutMs: 20, leaseMs: 1000 }"#,
    ] {
        let text = format!("{{ routes: {{}}, sharedState: {value} }}");
        let config = WebhooksConfig::from_json5(&text).unwrap();
        assert!(config.shared_state().is_some(), "{value}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_a_config_error_naming_the_key_without_the_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let dir = TempDir::new("shared-unreachable");
    let config = config(&dir, &format!(r#""{url}""#), "");

    let (status, output) =
        support::gateway_process::run_to_exit(Subprocess::command(Some(&config))).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("gateway: webhooks.sharedState: Redis is unreachable"),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");

    let mut command = Subprocess::command(None);
    command.args(["--shared-state", &url]);
    let (status, output) = support::gateway_process::run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("gateway: --shared-state: Redis is unreachable"),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");

    let mut command = Subprocess::command(None);
    command.args(["--shared-state", "memcached://cache", "--check-config"]);
    let (status, output) = support::gateway_process::run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains(
            "gateway: --shared-state: must be a redis:// URL (the only shared-state backend)"
        ),
        "{output}"
    );

    // `--check-config` names the kind and settings, never the URL, and connects to nothing.
    let mut command = Subprocess::command(Some(&config));
    command.arg("--check-config");
    let (status, output) = support::gateway_process::run_to_exit(command).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains(
            r#"shared state: redis (keyPrefix "tower-webhooks:", onUnavailable local, timeoutMs 50, leaseMs 30000)"#
        ),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");
    assert!(!output.contains("127.0.0.1"), "{output}");
}

/// Sharing the limiters on Redis rebuilds the pipeline; event routes' idempotency keys stay in the
/// store the gateway runs on, not in a fresh in-memory ledger.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_state_keeps_the_idempotency_keys_in_the_store() {
    let Some(url) = redis_url("sharing_state_keeps_the_idempotency_keys_in_the_store") else {
        return;
    };
    let dir = TempDir::new("ledger-kept");
    let store = dir.path().join("flows.db");
    let shared_state = format!(
        r#"{}, store: "sqlite:{}""#,
        shared(&url, &prefix("ledger"), ""),
        store.display()
    );
    let config = config(&dir, &shared_state, "");
    let (gateway, _) = Gateway::from_file(&config).unwrap();
    assert!(matches!(
        **gateway.pipeline().ledger(),
        tower_webhooks::taskflow::AnyLedger::Sqlite(_)
    ));
    let gateway = gateway.share_state(None).await.unwrap();
    assert!(gateway.shared_state().is_some());
    assert!(
        matches!(
            **gateway.pipeline().ledger(),
            tower_webhooks::taskflow::AnyLedger::Sqlite(_)
        ),
        "{:?}",
        gateway.pipeline().ledger()
    );
}
