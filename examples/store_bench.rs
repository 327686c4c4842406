//! What each store costs per action, beside what any store must pay, and `create_flow` throughput
//! over loopback (BENCHMARKS.md, "Stores").
//!
//! ```sh
//! cargo run --release --example store_bench --features gateway,sqlite -- [ITERATIONS] [SECONDS]
//! ```
//!
//! **In process**: each action runs ITERATIONS times (default 2,000) straight on the store, one at
//! a time, timed one by one; the table gives the median and p99. Beside them, bare rusqlite does
//! the same single-row `INSERT` and `UPDATE` (a flow-sized row, by primary key) in a `BEGIN
//! IMMEDIATE` transaction with the store's pragmas (WAL, `synchronous=FULL`): the floor any
//! durable SQLite store pays, mostly the `fsync` of each commit.
//!
//! **Over loopback**: the whole pipeline served by this process on 127.0.0.1 (one runtime worker),
//! 32 clients on keep-alive connections posting `create_flow` for SECONDS (default 5) each, on
//! memory and on SQLite, in the same run.

#[path = "support/timing.rs"]
mod timing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_webhooks::WebhookPipeline;
use tower_webhooks::clock::SystemClock;
use tower_webhooks::config::{Limits, ResolvedRoute};
use tower_webhooks::in_flight::InFlightConfig;
use tower_webhooks::rate_limit::RateLimitConfig;
use tower_webhooks::secret::Secret;
use tower_webhooks::serve::{ServeOptions, serve};
use tower_webhooks::taskflow::{
    AnyStore, CancelImmediately, MemoryStore, Mutation, NewFlow, NewTask, Patch, Runtime,
    SqliteStore, StoreConfig, TaskFlowStore,
};

const OWNER: &str = "agent:main:bench";
const SECRET: &str = "store-bench-secret";
const CLIENTS: usize = 32;

fn config() -> StoreConfig {
    StoreConfig::new()
        .max_flows_per_owner(None)
        .max_tasks_per_flow(None)
        .max_bytes_per_owner(None)
}

/// Every timed row of this benchmark's tables.
fn row(name: &str, samples: Vec<Duration>) {
    timing::row(34, name, samples);
}

async fn per_action<S: TaskFlowStore>(label: &str, store: &S, n: usize) {
    let mut create = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let flow = store
            .create_flow(OWNER, NewFlow::new("bench", format!("goal {i}")))
            .await
            .unwrap();
        create.push(started.elapsed());
        ids.push(flow.id_string());
    }
    let mut get = Vec::with_capacity(n);
    for id in &ids {
        let started = Instant::now();
        std::hint::black_box(store.get_flow(OWNER, id).await.unwrap());
        get.push(started.elapsed());
    }
    let mut mutate = Vec::with_capacity(n);
    for id in &ids {
        let waiting = Mutation::SetWaiting {
            current_step: Patch::Set("waiting".into()),
            state_json: None,
            wait_json: None,
            blocked_task_id: Patch::Keep,
            blocked_summary: Patch::Keep,
        };
        let started = Instant::now();
        std::hint::black_box(store.mutate_flow(OWNER, id, 0, waiting).await.unwrap());
        mutate.push(started.elapsed());
    }
    let mut run = Vec::with_capacity(n);
    for id in &ids {
        let mut new = NewTask::new(Runtime::Acp, "work");
        new.run_id = Some("run".into());
        let started = Instant::now();
        std::hint::black_box(store.run_task(OWNER, id, new).await.unwrap());
        run.push(started.elapsed());
    }
    row(&format!("{label} create_flow"), create);
    row(&format!("{label} get_flow"), get);
    row(&format!("{label} set_waiting"), mutate);
    row(&format!("{label} run_task"), run);
}

/// The same single-row writes through bare rusqlite, with the store's pragmas.
fn bare_rusqlite(path: &Path, n: usize) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE flows (seq INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL UNIQUE,
         owner_key TEXT NOT NULL, goal TEXT NOT NULL, status TEXT NOT NULL,
         revision INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    )
    .unwrap();
    let mut insert = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.execute(
            "INSERT INTO flows (flow_id, owner_key, goal, status, revision, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?4)",
            rusqlite::params![format!("{i:036}"), OWNER, format!("goal {i}"), i as i64],
        )
        .unwrap();
        tx.commit().unwrap();
        insert.push(started.elapsed());
    }
    let mut update = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.execute(
            "UPDATE flows SET status = 'waiting', revision = revision + 1, updated_at = ?2
             WHERE flow_id = ?1 AND revision = 0",
            rusqlite::params![format!("{i:036}"), i as i64],
        )
        .unwrap();
        tx.commit().unwrap();
        update.push(started.elapsed());
    }
    row("bare rusqlite INSERT (one row)", insert);
    row("bare rusqlite UPDATE (one row)", update);
}

/// One keep-alive client posting `create_flow` until `until`; counts 200s, panics on anything else.
async fn client(addr: SocketAddr, until: Instant, done: Arc<AtomicU64>) {
    let body = br#"{"action":"create_flow","goal":"loopback"}"#;
    let request = format!(
        "POST /hooks/bench HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         authorization: Bearer {SECRET}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < until {
        stream.write_all(&request).await.unwrap();
        // Read one response: headers, then content-length bytes.
        let mut have = 0;
        let (header_end, length) = loop {
            let n = stream.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "server closed");
            have += n;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                break (end + 4, length);
            }
        };
        while have < header_end + length {
            let n = stream.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "server closed");
            have += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn loopback(label: &str, store: AnyStore, seconds: u64) -> f64 {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits {
        rate_limit: RateLimitConfig::new().max_requests(u32::MAX),
        in_flight: InFlightConfig::new().max_per_key(1_000),
        ..Limits::default()
    };
    let pipeline = WebhookPipeline::new(store, limits);
    let router =
        pipeline.router(&[
            ResolvedRoute::new("bench", OWNER, [Secret::new(SECRET).unwrap()])
                .with_path("/hooks/bench"),
        ]);
    let listener = server.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    server.spawn(serve(listener, router, ServeOptions::default(), async {
        let _ = stopped.await;
    }));
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    clients.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| tokio::spawn(client(addr, until, Arc::clone(&done))))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    println!("| {label:<34} | {rate:>10.0} |");
    rate
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seconds: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir =
        std::env::temp_dir().join(format!("tower-webhooks-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    println!("In process, {n} calls each, one at a time (µs):\n");
    println!("| {:<34} | {:>10} | {:>10} |", "action", "median", "p99");
    println!("|{:-<36}|{:->12}|{:->12}|", "", "", "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        per_action("memory", &MemoryStore::with_config(config()), n).await;
        let sqlite = SqliteStore::build(
            dir.join("actions.db"),
            config(),
            SystemClock::shared(),
            Arc::new(CancelImmediately),
        )
        .unwrap();
        per_action("sqlite", &sqlite, n).await;
    });
    bare_rusqlite(&dir.join("bare.db"), n);

    println!("\ncreate_flow over loopback, {CLIENTS} keep-alive clients, {seconds} s each:\n");
    println!("| {:<34} | {:>10} |", "store", "requests/s");
    println!("|{:-<36}|{:->12}|", "", "");
    let memory = loopback(
        "memory",
        AnyStore::from(MemoryStore::with_config(config())),
        seconds,
    );
    let sqlite = SqliteStore::open(dir.join("loopback.db"), config()).unwrap();
    let durable = loopback("sqlite", AnyStore::from(sqlite), seconds);
    println!("\nsqlite / memory: {:.3}", durable / memory);
    let _ = std::fs::remove_dir_all(&dir);
}
