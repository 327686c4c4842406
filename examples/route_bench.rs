//! Each TaskFlow action and the whole event route over loopback, on memory, SQLite and (when
//! `TOWER_WEBHOOKS_POSTGRES_URL` is set) PostgreSQL, in one run (BENCHMARKS.md, "Over loopback,
//! per action and per event").
//!
//! ```sh
//! TOWER_WEBHOOKS_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release --example route_bench --features gateway,sqlite,postgres -- [ITERATIONS]
//! ```
//!
//! The pipeline is served by this process on 127.0.0.1 (one runtime worker); one client on one
//! keep-alive connection (another runtime, one worker) sends each request after the last answer,
//! ITERATIONS times per case (default 1,000), and the table gives the median and p99 of each
//! round trip. Per store, in order: `create_flow`, `get_flow`, `set_waiting` (`expectedRevision`
//! 0), `run_task` (with a `runId`) on the flows just made; then a signed GitHub `pull_request`
//! with a new delivery id each time (verify, event type, idempotency claim, templates, flow and
//! task, the key recorded), the same flow and task through the action API (`create_flow`, then
//! `run_task` on the new flow: two round trips, timed together), and the first delivery again
//! (`200 duplicate`).
//!
//! Also, in process, the idempotency ledger's claim and record (`begin` then `complete`) on each
//! store beside the bare driver's single-row `INSERT` (what any durable ledger pays).

#[path = "support/timing.rs"]
mod timing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_webhooks::WebhookPipeline;
use tower_webhooks::WebhooksConfig;
use tower_webhooks::clock::SystemClock;
use tower_webhooks::events::IdempotencyLedger;
use tower_webhooks::serve::{ServeOptions, serve};
use tower_webhooks::taskflow::{AnyLedger, AnyStore, MemoryStore, SqliteStore, StoreConfig};

const SESSION: &str = "agent:main:bench";
const ACTION_SECRET: &str = "route-bench-action-secret";
const GITHUB_SECRET: &str = "route-bench-github-secret";
const DAY: Duration = Duration::from_secs(24 * 3_600);

fn store_config() -> StoreConfig {
    StoreConfig::new()
        .max_flows_per_owner(None)
        .max_tasks_per_flow(None)
        .max_bytes_per_owner(None)
}

fn config() -> String {
    format!(
        r#"{{ routes: {{
             actions: {{ path: "/hooks/actions", sessionKey: "{SESSION}", secret: "{ACTION_SECRET}" }},
             github: {{ path: "/hooks/github", sessionKey: "{SESSION}",
                        auth: {{ mode: "signature", scheme: "github", secret: "{GITHUB_SECRET}" }},
                        events: ["pull_request"], idempotency: {{}},
                        dispatch: {{ mode: "taskflow", taskflow: {{
                            goalTemplate: "Review PR #{{pull_request.number}}: {{pull_request.title}}",
                            runTask: {{ taskTemplate: "Review {{pull_request.html_url}}" }} }} }} }} }},
           limits: {{ rateLimit: {{ maxRequests: 4294967295 }}, inFlight: {{ maxPerKey: 1000 }} }} }}"#
    )
}

/// Every timed row of this benchmark's tables.
fn row(name: &str, samples: Vec<Duration>) {
    timing::row(44, name, samples);
}

/// One keep-alive HTTP/1.1 connection, one request at a time.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Posts `body` to `path` with `headers`; the status and the body.
    async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let mut request = format!("POST {path} HTTP/1.1\r\nhost: bench\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.unwrap();
        let mut have = 0;
        let (header_end, length, status) = loop {
            let n = self.stream.read(&mut self.buf[have..]).await.unwrap();
            assert!(n > 0, "server closed");
            have += n;
            if let Some(end) = self.buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                let status: u16 = head[9..12].parse().unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                break (end + 4, length, status);
            }
        };
        while have < header_end + length {
            let n = self.stream.read(&mut self.buf[have..]).await.unwrap();
            assert!(n > 0, "server closed");
            have += n;
        }
        let body = serde_json::from_slice(&self.buf[header_end..header_end + length]).unwrap();
        (status, body)
    }

    async fn act(&mut self, action: Value) -> (u16, Value) {
        let bearer = format!("Bearer {ACTION_SECRET}");
        self.post(
            "/hooks/actions",
            &[("authorization", &bearer)],
            action.to_string().as_bytes(),
        )
        .await
    }

    async fn deliver(&mut self, delivery: &str, body: &[u8]) -> (u16, Value) {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.post(
            "/hooks/github",
            &[
                ("x-github-event", "pull_request"),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &signature),
            ],
            body,
        )
        .await
    }
}

fn expect(status: u16, answer: &Value, wanted: u16) {
    assert_eq!(status, wanted, "{answer}");
}

fn pull_request(number: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "number": number,
        "pull_request": {"number": number, "title": "Fix the flaky test",
                         "html_url": format!("https://github.com/o/r/pull/{number}")},
        "repository": {"full_name": "o/r"},
        "sender": {"login": "octocat"},
    }))
    .unwrap()
}

/// Every case over loopback on `store`, `n` times each.
fn over_loopback(label: &str, store: AnyStore, n: usize) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let resolved = WebhooksConfig::from_json5(&config()).unwrap().resolve();
    assert!(resolved.skipped.is_empty(), "{:?}", resolved.warnings());
    let ledger = AnyLedger::for_store(&store, SystemClock::shared());
    let pipeline = WebhookPipeline::new(store, resolved.limits.clone()).with_ledger(ledger);
    let router = pipeline.router(&resolved.routes);
    let listener = server.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    server.spawn(serve(listener, router, ServeOptions::default(), async {
        let _ = stopped.await;
    }));
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client.block_on(async {
        let mut conn = Connection::open(addr).await;
        let timed = |samples: &mut Vec<Duration>, started: Instant| samples.push(started.elapsed());
        let (mut create, mut get, mut wait, mut run) = (vec![], vec![], vec![], vec![]);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            let (status, answer) = conn
                .act(json!({"action": "create_flow", "goal": format!("goal {i}")}))
                .await;
            timed(&mut create, started);
            expect(status, &answer, 200);
            ids.push(answer["result"]["flow"]["flowId"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            let started = Instant::now();
            let (status, answer) = conn.act(json!({"action": "get_flow", "flowId": id})).await;
            timed(&mut get, started);
            expect(status, &answer, 200);
        }
        for id in &ids {
            let started = Instant::now();
            let (status, answer) = conn
                .act(json!({"action": "set_waiting", "flowId": id, "expectedRevision": 0,
                            "currentStep": "waiting"}))
                .await;
            timed(&mut wait, started);
            expect(status, &answer, 200);
        }
        for id in &ids {
            let started = Instant::now();
            let (status, answer) = conn
                .act(json!({"action": "run_task", "flowId": id, "runtime": "acp",
                            "task": "work", "runId": "run"}))
                .await;
            timed(&mut run, started);
            expect(status, &answer, 200);
        }
        let (mut event, mut by_actions, mut duplicate) = (vec![], vec![], vec![]);
        for i in 0..n {
            let body = pull_request(i);
            let started = Instant::now();
            let (status, answer) = conn.deliver(&format!("delivery-{i}"), &body).await;
            timed(&mut event, started);
            expect(status, &answer, 202);
        }
        for i in 0..n {
            let started = Instant::now();
            let (status, answer) = conn
                .act(json!({"action": "create_flow", "goal": format!("Review PR #{i}: Fix the flaky test"),
                            "controllerId": "webhooks/github", "currentStep": "review"}))
                .await;
            expect(status, &answer, 200);
            let id = answer["result"]["flow"]["flowId"].as_str().unwrap().to_owned();
            let (status, answer) = conn
                .act(json!({"action": "run_task", "flowId": id, "runtime": "acp",
                            "task": format!("Review https://github.com/o/r/pull/{i}"),
                            "runId": format!("delivery-{i}")}))
                .await;
            timed(&mut by_actions, started);
            expect(status, &answer, 200);
        }
        let body = pull_request(0);
        for _ in 0..n {
            let started = Instant::now();
            let (status, answer) = conn.deliver("delivery-0", &body).await;
            timed(&mut duplicate, started);
            expect(status, &answer, 200);
        }
        row(&format!("{label} create_flow"), create);
        row(&format!("{label} get_flow"), get);
        row(&format!("{label} set_waiting"), wait);
        row(&format!("{label} run_task"), run);
        row(&format!("{label} GitHub delivery → flow + task"), event);
        row(&format!("{label} same via create_flow + run_task"), by_actions);
        row(&format!("{label} GitHub delivery again (duplicate)"), duplicate);
    });
    let _ = stop.send(());
}

/// The ledger's claim and record, in process, `n` times with new keys.
async fn ledger_round<L: IdempotencyLedger>(label: &str, ledger: &L, n: usize) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{i}");
        let started = Instant::now();
        let claim = match ledger.begin("github", &key, DAY).await.unwrap() {
            tower_webhooks::events::Begin::Begun(claim) => claim,
            other => panic!("{other:?}"),
        };
        ledger.complete("github", &key, claim).await.unwrap();
        samples.push(started.elapsed());
    }
    row(&format!("{label} ledger begin + complete"), samples);
}

fn bare_sqlite_insert(path: &std::path::Path, n: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE keys (route_id TEXT, key_hash BLOB, expires_at INTEGER,
         PRIMARY KEY (route_id, key_hash)) WITHOUT ROWID",
    )
    .unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        conn.execute(
            "INSERT INTO keys VALUES ('github', ?1, 0)",
            [format!("key-{i:028}").into_bytes()],
        )
        .unwrap();
        samples.push(started.elapsed());
    }
    row("sqlite bare INSERT (one row, autocommit)", samples);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use tower_webhooks::taskflow::postgres::{PostgresOptions, PostgresStore};

    pub struct Schema {
        pub url: String,
        name: String,
        admin: tokio_postgres::Client,
    }

    pub async fn schema(base: &str) -> Schema {
        let (admin, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let name = format!("route_bench_{}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        Schema { url, name, admin }
    }

    impl Schema {
        pub async fn drop(self) {
            let _ = self
                .admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .await;
        }

        pub async fn store(&self) -> PostgresStore {
            PostgresStore::build(
                &self.url,
                store_config(),
                PostgresOptions::default(),
                SystemClock::shared(),
                Arc::new(tower_webhooks::taskflow::CancelImmediately),
            )
            .await
            .unwrap()
        }

        pub async fn bare_insert(&self, n: usize) {
            self.admin
                .batch_execute(&format!(
                    "CREATE TABLE {}.bare_keys (route_id text, key_hash bytea, expires_at bigint,
                     PRIMARY KEY (route_id, key_hash))",
                    self.name
                ))
                .await
                .unwrap();
            let insert = self
                .admin
                .prepare(&format!(
                    "INSERT INTO {}.bare_keys VALUES ('github', $1, 0)",
                    self.name
                ))
                .await
                .unwrap();
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let key = format!("key-{i:028}").into_bytes();
                let started = Instant::now();
                self.admin.execute(&insert, &[&key]).await.unwrap();
                samples.push(started.elapsed());
            }
            row("postgres bare INSERT (one row, autocommit)", samples);
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dir =
        std::env::temp_dir().join(format!("tower-webhooks-route-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    #[cfg(feature = "postgres")]
    let postgres_url = std::env::var("TOWER_WEBHOOKS_POSTGRES_URL").ok();

    println!("In process, {n} keys each, one at a time (µs):\n");
    println!("| {:<44} | {:>10} | {:>10} |", "case", "median", "p99");
    println!("|{:-<46}|{:->12}|{:->12}|", "", "", "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let memory = tower_webhooks::events::MemoryLedger::new();
        ledger_round("memory", &memory, n).await;
        let sqlite = SqliteStore::open(dir.join("ledger.db"), store_config()).unwrap();
        ledger_round("sqlite", &sqlite, n).await;
    });
    bare_sqlite_insert(&dir.join("bare.db"), n);
    #[cfg(feature = "postgres")]
    if let Some(base) = &postgres_url {
        rt.block_on(async {
            let schema = postgres::schema(base).await;
            let store = schema.store().await;
            ledger_round("postgres", &store, n).await;
            schema.bare_insert(n).await;
            drop(store);
            schema.drop().await;
        });
    }

    println!("\nOver loopback, {n} requests per case, one keep-alive connection (µs):\n");
    println!("| {:<44} | {:>10} | {:>10} |", "case", "median", "p99");
    println!("|{:-<46}|{:->12}|{:->12}|", "", "", "");
    over_loopback(
        "memory",
        AnyStore::from(MemoryStore::with_config(store_config())),
        n,
    );
    let sqlite = SqliteStore::open(dir.join("loopback.db"), store_config()).unwrap();
    over_loopback("sqlite", AnyStore::from(sqlite), n);
    #[cfg(feature = "postgres")]
    if let Some(base) = &postgres_url {
        let schema = rt.block_on(postgres::schema(base));
        let store = rt.block_on(schema.store());
        // The store's pool and change feed live on `rt`; the server runtime only drives requests.
        let _guard = rt.enter();
        over_loopback("postgres", AnyStore::from(store), n);
        rt.block_on(schema.drop());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
