//! The store conformance suite against `SqliteStore`, plus what only a file can show: migrations,
//! a newer schema refused, and everything still there after the store is reopened.

#[path = "support/store_conformance.rs"]
mod store_conformance;
#[path = "support/store_model.rs"]
mod store_model;
#[path = "support/temp.rs"]
#[allow(dead_code)]
mod temp;

use parking_lot::Mutex;
use store_conformance::{Setup, StoreFactory};
use temp::TempDir;
use tower_webhooks::taskflow::SqliteStore;

/// Each store gets a directory of its own, removed when the test's factory goes.
struct Sqlite {
    dirs: Mutex<Vec<TempDir>>,
}

impl Sqlite {
    fn new() -> Option<Self> {
        Some(Self {
            dirs: Mutex::new(Vec::new()),
        })
    }
}

impl StoreFactory for Sqlite {
    type Store = SqliteStore;

    async fn open(&self, setup: Setup) -> SqliteStore {
        let dir = TempDir::new("store");
        let path = dir.path().join("flows.db");
        self.dirs.lock().push(dir);
        SqliteStore::build(path, setup.config, setup.clock, setup.hook).unwrap()
    }
}

store_conformance::conformance_tests!(Sqlite::new());

fn counted(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        path,
        tower_webhooks::taskflow::StoreConfig::new().max_flows_per_owner(Some(3)),
    )
    .unwrap()
}

/// Everything acknowledged is there after the store is closed and the file opened again: flows
/// with their revisions, tasks, the `list_flows` order, the cap counters and `run_task`'s
/// idempotency.
#[tokio::test]
async fn reopening_the_file_keeps_every_record() {
    use tower_webhooks::taskflow::{
        Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome, Runtime, StoreError,
        TaskFlowStore,
    };
    let dir = TempDir::new("reopen");
    let path = dir.path().join("flows.db");
    let owner = "agent:main:reopen";
    let (before, task) = {
        let store = counted(&path);
        let a = store
            .create_flow(owner, NewFlow::new("c", "a"))
            .await
            .unwrap();
        store
            .create_flow(owner, NewFlow::new("c", "b"))
            .await
            .unwrap();
        let MutationOutcome::Applied(_) = store
            .mutate_flow(owner, &a.id_string(), 0, Mutation::RequestCancel)
            .await
            .unwrap()
        else {
            panic!("not applied");
        };
        let mut new = NewTask::new(Runtime::Acp, "t");
        new.run_id = Some("run".into());
        let MutationOutcome::RevisionConflict(_) = store
            .mutate_flow(owner, &a.id_string(), 0, Mutation::RequestCancel)
            .await
            .unwrap()
        else {
            panic!("stale revision applied");
        };
        let b = store.find_latest_flow(owner).await.unwrap().unwrap();
        let RunTaskOutcome::Created { task, .. } =
            store.run_task(owner, &b.id_string(), new).await.unwrap()
        else {
            panic!("no task");
        };
        (store_conformance::snapshot(&store, owner).await, task)
    };
    let store = counted(&path);
    assert_eq!(store_conformance::snapshot(&store, owner).await, before);
    let mut again = NewTask::new(Runtime::Acp, "t");
    again.run_id = Some("run".into());
    let RunTaskOutcome::Existing { task: same, .. } = store
        .run_task(owner, &task.parent_flow_id.to_string(), again)
        .await
        .unwrap()
    else {
        panic!("the repeat made a new task");
    };
    assert_eq!(same, task);
    store
        .create_flow(owner, NewFlow::new("c", "third"))
        .await
        .unwrap();
    assert_eq!(
        store.create_flow(owner, NewFlow::new("c", "fourth")).await,
        Err(StoreError::CapacityExceeded),
        "the counters survived"
    );
}

/// A file written by a newer build is refused, naming both versions, and left as it was.
#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let dir = TempDir::new("newer");
    let path = dir.path().join("flows.db");
    drop(SqliteStore::open(&path, Default::default()).unwrap());
    let newer = SqliteStore::schema_version() + 1;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?1, 'from the future', 0)",
        [newer],
    )
    .unwrap();
    drop(conn);
    let error = SqliteStore::open(&path, Default::default()).unwrap_err();
    assert_eq!(
        error,
        tower_webhooks::taskflow::StoreError::SchemaTooNew {
            found: newer,
            supported: SqliteStore::schema_version()
        }
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("version {newer}"))
            && text.contains(&format!("version {}", SqliteStore::schema_version())),
        "{text}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, i64::from(newer), "nothing was applied or removed");
}

/// A file that is not a database, or a path that cannot be created, is an error, not a panic.
#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = TempDir::new("garbage");
    let path = dir.path().join("flows.db");
    std::fs::write(&path, b"this is not a database, it is a poem about one").unwrap();
    let error = SqliteStore::open(&path, Default::default()).unwrap_err();
    assert!(error.is_persist_failure(), "{error:?}");
    let missing = dir.path().join("no/such/dir/flows.db");
    assert!(SqliteStore::open(&missing, Default::default()).is_err());
    let migrations_applied = SqliteStore::schema_version();
    assert_eq!(migrations_applied, 2);
}

/// A file written by the first release (flows and tasks, no idempotency keys) is brought up to
/// date when a newer build opens it, and its flows are still there.
#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_flows_kept() {
    use tower_webhooks::taskflow::{NewFlow, TaskFlowStore};
    let dir = TempDir::new("upgrade");
    let path = dir.path().join("flows.db");
    let first = SqliteStore::open(&path, Default::default()).unwrap();
    let flow = first
        .create_flow("owner", NewFlow::new("ctl", "goal"))
        .await
        .unwrap();
    drop(first);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE idempotency_keys; DELETE FROM schema_version WHERE version > 1")
        .unwrap();
    drop(conn);

    let upgraded = SqliteStore::open(&path, Default::default()).unwrap();
    assert_eq!(
        upgraded.get_flow("owner", &flow.id_string()).await.unwrap(),
        Some(flow)
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let newest: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(newest, 2);
    let keys: i64 = conn
        .query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 0, "the keys' table exists again");
}
