//! One idempotency-ledger contract (SPEC §8), run on the three ledgers: `MemoryLedger`, a
//! `SqliteStore` and a `PostgresStore` (`TOWER_WEBHOOKS_POSTGRES_URL`, a schema per test). What
//! only a database shows follows: keys kept across a reopen (a restart) and across two stores on
//! one schema (two replicas), the sweep forgetting expired keys and only those, and an outage
//! answered as unavailable without a panic or a changed key.

#[path = "support/postgres.rs"]
mod postgres_support;
mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use postgres_support::{TcpProxy, TestSchema, url_or_skip};
use support::temp::TempDir;
use tower_webhooks::clock::{ManualClock, SharedClock};
use tower_webhooks::events::{
    Begin, Claim, IN_PROGRESS_LEASE, IdempotencyLedger, LedgerUnavailable, MemoryLedger,
};
use tower_webhooks::taskflow::postgres::{PostgresOptions, PostgresStore};
use tower_webhooks::taskflow::{CancelImmediately, SqliteStore, StoreConfig, TaskFlowStore};

const DAY: Duration = Duration::from_secs(24 * 3_600);
const START: u64 = 1_700_000_000_000;

fn claimed(begin: Result<Begin, LedgerUnavailable>) -> Claim {
    match begin {
        Ok(Begin::Begun(claim)) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

async fn sqlite(dir: &TempDir, clock: &Arc<ManualClock>) -> SqliteStore {
    let path = dir.path().join("ledger.db");
    let clock: SharedClock = clock.clone();
    tokio::task::spawn_blocking(move || {
        SqliteStore::build(
            path,
            StoreConfig::default(),
            clock,
            Arc::new(CancelImmediately),
        )
    })
    .await
    .unwrap()
    .unwrap()
}

async fn postgres(url: &str, clock: &Arc<ManualClock>) -> PostgresStore {
    PostgresStore::build(
        url,
        StoreConfig::default(),
        PostgresOptions::default(),
        clock.clone(),
        Arc::new(CancelImmediately),
    )
    .await
    .unwrap()
}

/// Every case of the contract on the ledger `open` makes, each on a clock of its own.
async fn contract<L, F, Fut>(open: F)
where
    L: IdempotencyLedger,
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = L>,
{
    // A key is a duplicate only once its dispatch completed, for its TTL to the millisecond.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let claim = claimed(ledger.begin("gh", "d-1", DAY).await);
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::InProgress));
    claimed(ledger.begin("stripe", "d-1", DAY).await);
    claimed(ledger.begin("gh", "d-2", DAY).await);
    ledger.complete("gh", "d-1", claim).await.unwrap();
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::Duplicate));
    clock.advance(millis(DAY) - 1);
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::Duplicate));
    clock.advance(1);
    claimed(ledger.begin("gh", "d-1", DAY).await);

    // An abandoned key is dispatched again, under a new claim.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let first = claimed(ledger.begin("gh", "d-1", DAY).await);
    ledger.abandon("gh", "d-1", first).await.unwrap();
    let retry = claimed(ledger.begin("gh", "d-1", DAY).await);
    assert_ne!(retry, first);
    ledger.complete("gh", "d-1", retry).await.unwrap();
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::Duplicate));

    // A lapsed claim is taken over; its first holder can neither undo nor complete the second's.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let first = claimed(ledger.begin("gh", "d-1", DAY).await);
    clock.advance(millis(IN_PROGRESS_LEASE) - 1);
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::InProgress));
    clock.advance(1);
    let second = claimed(ledger.begin("gh", "d-1", DAY).await);
    ledger.abandon("gh", "d-1", first).await.unwrap();
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::InProgress));
    ledger.complete("gh", "d-1", first).await.unwrap();
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::InProgress));
    ledger.complete("gh", "d-1", second).await.unwrap();
    assert_eq!(ledger.begin("gh", "d-1", DAY).await, Ok(Begin::Duplicate));

    // Each claim's own TTL: a short one is forgotten while a long one is remembered.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let short = claimed(ledger.begin("gh", "short", Duration::from_secs(60)).await);
    let long = claimed(ledger.begin("gh", "long", DAY).await);
    ledger.complete("gh", "short", short).await.unwrap();
    ledger.complete("gh", "long", long).await.unwrap();
    clock.advance(60_000);
    claimed(ledger.begin("gh", "short", DAY).await);
    assert_eq!(ledger.begin("gh", "long", DAY).await, Ok(Begin::Duplicate));

    // Keys as senders send them: long, NUL, non-ASCII, near-identical; each its own.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let long_key = "k".repeat(100_000);
    let keys = [
        long_key.as_str(),
        &long_key[1..],
        "a\0b",
        "a",
        "évènement-✓",
        "evenement-✓",
        " padded ",
        "padded",
    ];
    for key in keys {
        let claim = claimed(ledger.begin("gh", key, DAY).await);
        ledger.complete("gh", key, claim).await.unwrap();
    }
    for key in keys {
        assert_eq!(
            ledger.begin("gh", key, DAY).await,
            Ok(Begin::Duplicate),
            "{key:.20?}"
        );
    }
    claimed(ledger.begin("gh", "a\0", DAY).await);

    // Sixteen deliveries of one key at once: exactly one is dispatched.
    let clock = ManualClock::new(START);
    let ledger = open(clock.clone()).await;
    let answers =
        futures_util::future::join_all((0..16).map(|_| ledger.begin("gh", "burst", DAY))).await;
    let begun = answers
        .iter()
        .filter(|a| matches!(a, Ok(Begin::Begun(_))))
        .count();
    let in_progress = answers
        .iter()
        .filter(|a| **a == Ok(Begin::InProgress))
        .count();
    assert_eq!((begun, in_progress), (1, 15), "{answers:?}");
}

#[tokio::test]
async fn the_memory_ledger_keeps_the_contract() {
    contract(|clock| async move { MemoryLedger::new().with_clock(clock) }).await;
}

#[tokio::test]
async fn the_sqlite_ledger_keeps_the_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    contract(|clock| {
        let dir = TempDir::new("ledger-contract");
        let path = dir.path().to_path_buf();
        dirs.lock().unwrap().push(dir);
        async move {
            let clock: SharedClock = clock;
            tokio::task::spawn_blocking(move || {
                SqliteStore::build(
                    path.join("ledger.db"),
                    StoreConfig::default(),
                    clock,
                    Arc::new(CancelImmediately),
                )
            })
            .await
            .unwrap()
            .unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_ledger_keeps_the_contract() {
    let Some(base) = url_or_skip("the_postgres_ledger_keeps_the_contract") else {
        return;
    };
    let schemas = std::sync::Mutex::new(Vec::new());
    contract(|clock| {
        let base = base.clone();
        let schemas = &schemas;
        async move {
            let schema = TestSchema::create(&base, "ledger_contract").await;
            let store = postgres(&schema.url(), &clock).await;
            schemas.lock().unwrap().push(schema);
            store
        }
    })
    .await;
}

#[tokio::test]
async fn sqlite_keeps_keys_across_a_reopen() {
    let dir = TempDir::new("ledger-reopen");
    let clock = ManualClock::new(START);
    let store = sqlite(&dir, &clock).await;
    let done = claimed(store.begin("gh", "done", DAY).await);
    store.complete("gh", "done", done).await.unwrap();
    let _handled = claimed(store.begin("gh", "handled", DAY).await);
    drop(store);

    // The process restarted: what it recorded is a duplicate; what it was handling when it died is
    // held until the claim lapses, then dispatched again.
    let store = sqlite(&dir, &clock).await;
    assert_eq!(store.begin("gh", "done", DAY).await, Ok(Begin::Duplicate));
    assert_eq!(
        store.begin("gh", "handled", DAY).await,
        Ok(Begin::InProgress)
    );
    clock.advance(millis(IN_PROGRESS_LEASE));
    claimed(store.begin("gh", "handled", DAY).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_stores_on_one_schema_share_keys() {
    let Some(base) = url_or_skip("two_postgres_stores_on_one_schema_share_keys") else {
        return;
    };
    let schema = TestSchema::create(&base, "ledger_replicas").await;
    let clock = ManualClock::new(START);
    let (a, b) = (
        postgres(&schema.url(), &clock).await,
        postgres(&schema.url(), &clock).await,
    );
    let claim = claimed(a.begin("gh", "d-1", DAY).await);
    assert_eq!(b.begin("gh", "d-1", DAY).await, Ok(Begin::InProgress));
    a.complete("gh", "d-1", claim).await.unwrap();
    assert_eq!(b.begin("gh", "d-1", DAY).await, Ok(Begin::Duplicate));

    // One key handed to both replicas, eight times each, all at once: one claim in sixteen.
    let replicas = [&a, &b];
    let answers =
        futures_util::future::join_all((0..16).map(|n| replicas[n % 2].begin("gh", "both", DAY)))
            .await;
    let begun = answers
        .iter()
        .filter(|a| matches!(a, Ok(Begin::Begun(_))))
        .count();
    assert_eq!(begun, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(Begin::Begun(_) | Begin::InProgress))),
        "{answers:?}"
    );
}

/// Rows of the ledger table behind the store's back.
async fn postgres_keys(schema: &TestSchema) -> i64 {
    schema
        .admin()
        .await
        .query_one("SELECT count(*) FROM taskflow_idempotency_keys", &[])
        .await
        .unwrap()
        .get(0)
}

fn sqlite_keys(dir: &TempDir) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    conn.query_row("SELECT count(*) FROM idempotency_keys", [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// Records `expired` (TTL one minute) and `kept` (a day), and claims `lapsed`, then moves the
/// clock past the minute and the lease.
async fn age<L: IdempotencyLedger>(ledger: &L, clock: &ManualClock) {
    let expired = claimed(ledger.begin("gh", "expired", Duration::from_secs(60)).await);
    ledger.complete("gh", "expired", expired).await.unwrap();
    let kept = claimed(ledger.begin("gh", "kept", DAY).await);
    ledger.complete("gh", "kept", kept).await.unwrap();
    let _lapsed = claimed(ledger.begin("gh", "lapsed", DAY).await);
    clock.advance(millis(IN_PROGRESS_LEASE));
}

#[tokio::test]
async fn the_sqlite_sweep_forgets_expired_keys_and_only_those() {
    let dir = TempDir::new("ledger-sweep");
    let clock = ManualClock::new(START);
    let store = sqlite(&dir, &clock).await;
    age(&store, &clock).await;
    assert_eq!(sqlite_keys(&dir), 3);
    assert_eq!(store.sweep_expired().await, Ok(0), "keys are not flows");
    assert_eq!(sqlite_keys(&dir), 1);
    assert_eq!(store.begin("gh", "kept", DAY).await, Ok(Begin::Duplicate));
    claimed(store.begin("gh", "expired", DAY).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_sweep_forgets_expired_keys_and_only_those() {
    let Some(base) = url_or_skip("the_postgres_sweep_forgets_expired_keys_and_only_those") else {
        return;
    };
    let schema = TestSchema::create(&base, "ledger_sweep").await;
    let clock = ManualClock::new(START);
    let store = postgres(&schema.url(), &clock).await;
    age(&store, &clock).await;
    assert_eq!(postgres_keys(&schema).await, 3);
    assert_eq!(store.sweep_expired().await, Ok(0), "keys are not flows");
    assert_eq!(postgres_keys(&schema).await, 1);
    assert_eq!(store.begin("gh", "kept", DAY).await, Ok(Begin::Duplicate));
    claimed(store.begin("gh", "expired", DAY).await);
}

#[tokio::test]
async fn a_claim_swept_after_it_lapsed_is_still_recorded_when_its_dispatch_completes() {
    let dir = TempDir::new("ledger-late");
    let clock = ManualClock::new(START);
    let store = sqlite(&dir, &clock).await;
    let slow = claimed(store.begin("gh", "slow", DAY).await);
    clock.advance(millis(IN_PROGRESS_LEASE));
    store.sweep_expired().await.unwrap();
    assert_eq!(sqlite_keys(&dir), 0);
    // The dispatch did happen: a retry must not dispatch it again.
    store.complete("gh", "slow", slow).await.unwrap();
    assert_eq!(store.begin("gh", "slow", DAY).await, Ok(Begin::Duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_unavailable_and_changes_no_key() {
    let Some(base) = url_or_skip("a_postgres_outage_is_unavailable_and_changes_no_key") else {
        return;
    };
    let schema = TestSchema::create(&base, "ledger_outage").await;
    let proxy = TcpProxy::start(&base).await;
    let clock = ManualClock::new(START);
    let options = PostgresOptions::default();
    let store = PostgresStore::build(
        &proxy.url(&base, &schema.name),
        StoreConfig::default(),
        options,
        clock.clone(),
        Arc::new(CancelImmediately),
    )
    .await
    .unwrap();
    let held = claimed(store.begin("gh", "held", DAY).await);

    proxy.cut();
    assert_eq!(
        store.begin("gh", "new", DAY).await,
        Err(LedgerUnavailable),
        "a claim that cannot be made is refused"
    );
    assert_eq!(
        store.complete("gh", "held", held).await,
        Err(LedgerUnavailable)
    );
    assert_eq!(postgres_keys(&schema).await, 1, "nothing changed");

    proxy.restore();
    // Back without a restart; the claim that could not be completed still holds its key.
    claimed(store.begin("gh", "new", DAY).await);
    assert_eq!(store.begin("gh", "held", DAY).await, Ok(Begin::InProgress));
    store.abandon("gh", "held", held).await.unwrap();
    claimed(store.begin("gh", "held", DAY).await);
}
