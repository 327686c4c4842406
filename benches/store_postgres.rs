//! `PostgresStore` per action, beside the bare driver doing the same single-row write and beside
//! `MemoryStore`; then `create_flow` throughput with 32 clients on one store and on two stores
//! (two replicas: two pools, one database).
//!
//! Every figure of a table is measured in the same run. Latencies are per call, sequential, one
//! client (p50 and p99 of `SAMPLES` calls after a warm-up); throughput counts completed calls per
//! second over a fixed number of calls.
//!
//! Run: `TOWER_WEBHOOKS_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!       cargo bench --features postgres --bench store_postgres`

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::NoTls;
use tower_webhooks::taskflow::postgres::{PostgresOptions, PostgresStore};
use tower_webhooks::taskflow::{
    MemoryStore, Mutation, NewFlow, NewTask, Patch, Runtime, StoreConfig, TaskFlowStore,
};
use uuid::Uuid;

const SAMPLES: usize = 2_000;
const WARM_UP: usize = 200;
const CLIENTS: usize = 32;
const CALLS: usize = 6_400;

fn config() -> StoreConfig {
    StoreConfig::new()
        .max_flows_per_owner(None)
        .max_tasks_per_flow(None)
        .max_bytes_per_owner(None)
}

fn new_flow() -> NewFlow {
    let mut new = NewFlow::new("webhooks/bench", "ship the release");
    new.state_json = Some(json!({"step": 1, "items": ["a", "b"], "ratio": 1.5}));
    new
}

/// p50 and p99 of `samples` sequential calls, in µs.
async fn latency<F, Fut>(samples: usize, mut call: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..WARM_UP {
        call(i).await;
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        call(WARM_UP + i).await;
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (micros(at(0.50)), micros(at(0.99)))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Calls per second of `clients` tasks sharing `total` calls.
async fn throughput<F, Fut>(clients: usize, total: usize, call: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                for i in 0..total / clients {
                    call(client, i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn row(name: &str, (p50, p99): (f64, f64), bare: Option<(f64, f64)>) {
    let ratio = bare.map_or(String::from("—"), |(b50, _)| format!("{:.2}×", p50 / b50));
    println!("| {name} | {p50:.0} | {p99:.0} | {ratio} |");
}

fn main() {
    let Ok(base) = std::env::var("TOWER_WEBHOOKS_POSTGRES_URL") else {
        println!("skipped: TOWER_WEBHOOKS_POSTGRES_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(base));
}

async fn run(base: String) {
    let schema = format!("tw_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&base, NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.bare (id uuid PRIMARY KEY, owner_key text NOT NULL,
                 revision bigint NOT NULL, goal text NOT NULL, state_json json,
                 created_at bigint NOT NULL, updated_at bigint NOT NULL)"
        ))
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");

    // The bare driver: one prepared statement per call, autocommit, one connection.
    let (bare, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let insert = bare
        .prepare(
            "INSERT INTO bare (id, owner_key, revision, goal, state_json, created_at, updated_at)
             VALUES ($1, $2, 0, $3, $4, $5, $5)",
        )
        .await
        .unwrap();
    let update = bare
        .prepare(
            "UPDATE bare SET revision = revision + 1, updated_at = $3
             WHERE id = $1 AND revision = $2 RETURNING revision",
        )
        .await
        .unwrap();
    let select = bare
        .prepare("SELECT id, goal, state_json FROM bare WHERE id = $1 AND owner_key = $2")
        .await
        .unwrap();
    let state = json!({"step": 1, "items": ["a", "b"], "ratio": 1.5});
    let bare_ids: Vec<Uuid> = (0..SAMPLES + WARM_UP).map(|_| Uuid::new_v4()).collect();
    let bare_insert = latency(SAMPLES, |i| {
        let (bare, insert, state, id) = (&bare, &insert, &state, bare_ids[i]);
        async move {
            bare.execute(
                insert,
                &[
                    &id,
                    &"owner",
                    &"ship the release",
                    &tokio_postgres::types::Json(state),
                    &1_i64,
                ],
            )
            .await
            .unwrap();
        }
    })
    .await;
    let bare_update = latency(SAMPLES, |i| {
        let (bare, update, id) = (&bare, &update, bare_ids[0]);
        async move {
            bare.query_one(update, &[&id, &(i as i64), &2_i64])
                .await
                .unwrap();
        }
    })
    .await;
    let bare_select = latency(SAMPLES, |i| {
        let (bare, select, id) = (&bare, &select, bare_ids[i]);
        async move {
            bare.query_one(select, &[&id, &"owner"]).await.unwrap();
        }
    })
    .await;

    let store = PostgresStore::connect(&url, config()).await.unwrap();
    let memory = MemoryStore::with_config(config());
    let owner = "agent:main:bench";

    macro_rules! per_store {
        ($store:expr) => {{
            let store = &$store;
            let mut ids = Vec::new();
            let create = {
                let ids = &mut ids;
                let started_ids = std::cell::RefCell::new(Vec::new());
                let result = latency(SAMPLES, |_| {
                    let started_ids = &started_ids;
                    async move {
                        let flow = store.create_flow(owner, new_flow()).await.unwrap();
                        started_ids.borrow_mut().push(flow.id_string());
                    }
                })
                .await;
                *ids = started_ids.into_inner();
                result
            };
            let get = latency(SAMPLES, |i| {
                let id = ids[i].clone();
                async move {
                    store.get_flow(owner, &id).await.unwrap().unwrap();
                }
            })
            .await;
            let mutate = latency(SAMPLES, |i| {
                let id = ids[i].clone();
                async move {
                    let waiting = Mutation::SetWaiting {
                        current_step: Patch::Set("waiting on CI".into()),
                        state_json: Some(json!({"step": 2})),
                        wait_json: None,
                        blocked_task_id: Patch::Keep,
                        blocked_summary: Patch::Keep,
                    };
                    store.mutate_flow(owner, &id, 0, waiting).await.unwrap();
                }
            })
            .await;
            let run = latency(SAMPLES, |i| {
                let id = ids[i].clone();
                async move {
                    let mut new = NewTask::new(Runtime::Acp, "build");
                    new.run_id = Some(format!("run-{i}"));
                    store.run_task(owner, &id, new).await.unwrap();
                }
            })
            .await;
            let list_owner = format!("lister-{}", Uuid::new_v4());
            for _ in 0..20 {
                store.create_flow(&list_owner, new_flow()).await.unwrap();
            }
            let list = latency(SAMPLES, |_| {
                let list_owner = list_owner.clone();
                async move {
                    assert_eq!(store.list_flows(&list_owner).await.unwrap().len(), 20);
                }
            })
            .await;
            (create, get, mutate, run, list)
        }};
    }

    let (pg_create, pg_get, pg_mutate, pg_run, pg_list) = per_store!(store);
    let (mem_create, mem_get, mem_mutate, mem_run, mem_list) = per_store!(memory);

    println!("\n### Per call, one client, sequential (µs; {SAMPLES} calls after {WARM_UP})\n");
    println!("| call | p50 | p99 | p50 ÷ bare driver |");
    println!("|---|---:|---:|---:|");
    row(
        "bare driver: INSERT one row (autocommit)",
        bare_insert,
        None,
    );
    row(
        "bare driver: UPDATE … WHERE revision = $n RETURNING",
        bare_update,
        None,
    );
    row("bare driver: SELECT one row", bare_select, None);
    row("PostgresStore::create_flow", pg_create, Some(bare_insert));
    row("PostgresStore::get_flow", pg_get, Some(bare_select));
    row(
        "PostgresStore::mutate_flow (set_waiting)",
        pg_mutate,
        Some(bare_update),
    );
    row(
        "PostgresStore::run_task (with runId)",
        pg_run,
        Some(bare_insert),
    );
    row(
        "PostgresStore::list_flows (20 flows)",
        pg_list,
        Some(bare_select),
    );
    row("MemoryStore::create_flow", mem_create, None);
    row("MemoryStore::get_flow", mem_get, None);
    row("MemoryStore::mutate_flow (set_waiting)", mem_mutate, None);
    row("MemoryStore::run_task (with runId)", mem_run, None);
    row("MemoryStore::list_flows (20 flows)", mem_list, None);

    // Throughput: 32 clients. One owner (every write takes that owner's row lock, as a webhook
    // route's session does) and 32 owners (no shared lock), on one store and split over two.
    // 16 connections per store (the default pool), so two replicas hold 32 between them, as many
    // as the bare driver's clients: the server's connection limit is shared with other users.
    drop(bare);
    let options = PostgresOptions::default().max_connections(CLIENTS / 2);
    let connect = || {
        PostgresStore::build(
            &url,
            config(),
            options.clone(),
            tower_webhooks::clock::SystemClock::shared(),
            Arc::new(tower_webhooks::taskflow::CancelImmediately),
        )
    };
    let mut bare_pool = Vec::new();
    for _ in 0..CLIENTS {
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        let statement = client
            .prepare(
                "INSERT INTO bare (id, owner_key, revision, goal, state_json, created_at,
                 updated_at) VALUES ($1, $2, 0, $3, $4, $5, $5)",
            )
            .await
            .unwrap();
        bare_pool.push((client, statement));
    }
    let bare_pool = Arc::new(bare_pool);
    let bare_tput = {
        let bare_pool = Arc::clone(&bare_pool);
        throughput(CLIENTS, CALLS, move |client, _| {
            let bare_pool = Arc::clone(&bare_pool);
            async move {
                let (conn, statement) = &bare_pool[client];
                let state = json!({"step": 1, "items": ["a", "b"], "ratio": 1.5});
                conn.execute(
                    statement,
                    &[
                        &Uuid::new_v4(),
                        &"owner",
                        &"ship the release",
                        &tokio_postgres::types::Json(&state),
                        &1_i64,
                    ],
                )
                .await
                .unwrap();
            }
        })
        .await
    };
    drop(bare_pool);
    drop(store);
    let one = Arc::new(connect().await.unwrap());
    let two = [
        Arc::new(connect().await.unwrap()),
        Arc::new(connect().await.unwrap()),
    ];
    let mut results = Vec::new();
    for owners in [1, CLIENTS] {
        let store = Arc::clone(&one);
        let single = throughput(CLIENTS, CALLS, move |client, _| {
            let store = Arc::clone(&store);
            async move {
                let owner = format!("owner-{}", client % owners);
                store.create_flow(&owner, new_flow()).await.unwrap();
            }
        })
        .await;
        let stores = two.clone();
        let split = throughput(CLIENTS, CALLS, move |client, _| {
            let store = Arc::clone(&stores[client % 2]);
            async move {
                let owner = format!("owner-{}", client % owners);
                store.create_flow(&owner, new_flow()).await.unwrap();
            }
        })
        .await;
        results.push((owners, single, split));
    }
    println!("\n### create_flow throughput, {CLIENTS} clients, {CALLS} calls (calls/s)\n");
    println!("| what | calls/s | ÷ bare INSERT |");
    println!("|---|---:|---:|");
    println!("| bare driver INSERT, {CLIENTS} connections | {bare_tput:.0} | 1.00× |");
    for (owners, single, split) in results {
        println!(
            "| PostgresStore, one replica, {owners} owner(s) | {single:.0} | {:.2}× |",
            single / bare_tput
        );
        println!(
            "| PostgresStore, two replicas, {owners} owner(s) | {split:.0} | {:.2}× |",
            split / bare_tput
        );
    }
    drop((one, two));
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}
