//! `PostgresStore` against a real PostgreSQL (`TOWER_WEBHOOKS_POSTGRES_URL`), each test in its own
//! schema: what only a database shows (migrations, two stores on one schema, the exact stored
//! JSON text, the change feed across stores, credentials kept out of errors).

#[path = "support/postgres.rs"]
mod postgres_support;
#[path = "support/store_conformance.rs"]
mod store_conformance;
#[path = "support/store_model.rs"]
mod store_model;

use std::sync::Mutex;

use postgres_support::{TestSchema, url_or_skip, with_search_path};
use serde_json::json;
use store_conformance::{Setup, StoreFactory};
use tower_webhooks::taskflow::postgres::{PostgresOptions, PostgresStore};
use tower_webhooks::taskflow::{
    MemoryStoreConfig, Mutation, MutationOutcome, NewFlow, NewTask, RunTaskOutcome, Runtime,
    StoreError, TaskFlowStore,
};

/// Opens each conformance case's stores in a schema of their own.
struct Postgres {
    base: String,
    schemas: Mutex<Vec<TestSchema>>,
}

impl Postgres {
    fn from_env() -> Option<Self> {
        url_or_skip("the conformance suite on PostgreSQL").map(|base| Self {
            base,
            schemas: Mutex::new(Vec::new()),
        })
    }
}

impl StoreFactory for Postgres {
    type Store = PostgresStore;

    async fn open(&self, setup: Setup) -> PostgresStore {
        let schema = TestSchema::create(&self.base, "conformance").await;
        let store = PostgresStore::build(
            &schema.url(),
            setup.config,
            PostgresOptions::default(),
            setup.clock,
            setup.hook,
        )
        .await
        .unwrap();
        self.schemas.lock().unwrap().push(schema);
        store
    }
}

store_conformance::conformance_tests!(Postgres::from_env());

macro_rules! schema_or_skip {
    ($name:literal) => {
        match url_or_skip($name) {
            Some(base) => TestSchema::create(&base, $name).await,
            None => return,
        }
    };
}

async fn store(schema: &TestSchema) -> PostgresStore {
    PostgresStore::connect(&schema.url(), MemoryStoreConfig::default())
        .await
        .unwrap()
}

fn persist_text(error: StoreError) -> String {
    match error {
        StoreError::PersistFailed(text) => text,
        other => panic!("expected persist_failed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_connect_finds_the_schema_migrated_and_the_data_there() {
    let schema = schema_or_skip!("reconnect");
    let first = store(&schema).await;
    let flow = first
        .create_flow("owner", NewFlow::new("ctl", "goal"))
        .await
        .unwrap();
    drop(first);
    let second = store(&schema).await;
    assert_eq!(
        second.get_flow("owner", &flow.id_string()).await.unwrap(),
        Some(flow)
    );
    let versions: i64 = schema
        .admin()
        .await
        .query_one("SELECT count(*) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        versions,
        i64::from(PostgresStore::schema_version()),
        "each migration is recorded once"
    );
}

/// A schema written by the first release (flows and tasks, no idempotency keys) is brought up to
/// date when a newer build connects, and its flows are still there.
#[tokio::test]
async fn a_version_1_schema_is_migrated_with_its_flows_kept() {
    let schema = schema_or_skip!("upgrade");
    let first = store(&schema).await;
    let flow = first
        .create_flow("owner", NewFlow::new("ctl", "goal"))
        .await
        .unwrap();
    drop(first);
    // What the first release left: its tables and version 1, nothing later.
    schema
        .admin()
        .await
        .batch_execute(
            "DROP TABLE taskflow_idempotency_keys; DELETE FROM schema_version WHERE version > 1",
        )
        .await
        .unwrap();
    let upgraded = store(&schema).await;
    assert_eq!(
        upgraded.get_flow("owner", &flow.id_string()).await.unwrap(),
        Some(flow)
    );
    let admin = schema.admin().await;
    let newest: i32 = admin
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(newest, 2);
    let keys: i64 = admin
        .query_one("SELECT count(*) FROM taskflow_idempotency_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0, "the keys' table exists again");
}

#[tokio::test]
async fn a_schema_written_by_a_newer_version_is_refused_by_name() {
    let schema = schema_or_skip!("newer");
    drop(store(&schema).await);
    schema
        .admin()
        .await
        .execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)",
            &[],
        )
        .await
        .unwrap();
    let error = PostgresStore::connect(&schema.url(), MemoryStoreConfig::default())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooNew {
            found: 99,
            supported: PostgresStore::schema_version()
        }
    );
    assert!(
        error.to_string().contains("upgrade tower-webhooks"),
        "{error}"
    );
    // Refused before anything was written: the version table still says 99.
    let newest: i32 = schema
        .admin()
        .await
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(newest, 99);
}

#[tokio::test]
async fn a_search_path_without_a_schema_is_named_as_the_problem() {
    let Some(base) = url_or_skip("no_schema") else {
        return;
    };
    let error = persist_text(
        PostgresStore::connect(
            &with_search_path(&base, "tw_schema_that_does_not_exist"),
            MemoryStoreConfig::default(),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        error.contains("search_path names no existing schema"),
        "{error}"
    );
}

#[tokio::test]
async fn the_url_password_appears_in_no_error_and_no_debug() {
    let Some(base) = url_or_skip("password") else {
        return;
    };
    const PASSWORD: &str = "pw-Zq81-never-print";
    // Nothing listens on port 1: the connection is refused.
    let refused = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/test");
    let error = PostgresStore::connect(&refused, MemoryStoreConfig::default())
        .await
        .unwrap_err();
    let (text, debug) = (error.to_string(), format!("{error:?}"));
    assert!(text.contains("cannot reach PostgreSQL"), "{text}");
    assert!(
        !text.contains(PASSWORD) && !debug.contains(PASSWORD),
        "{text} {debug}"
    );
    // A malformed URL carrying the password is reported without quoting it.
    let malformed = format!("postgres://postgres:{PASSWORD}@127.0.0.1:notaport/test");
    let error = PostgresStore::connect(&malformed, MemoryStoreConfig::default())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("TaskFlow persistence failed: invalid PostgreSQL URL")
    );
    assert!(!format!("{error} {error:?}").contains(PASSWORD));
    // Trust authentication takes any password: a working store with one in its URL.
    let schema = TestSchema::create(&base, "password").await;
    let url = schema.url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert!(
        url.contains(PASSWORD),
        "the test URL must carry the password: {url}"
    );
    let store = PostgresStore::connect(&url, MemoryStoreConfig::default())
        .await
        .unwrap();
    assert!(!format!("{store:?}").contains(PASSWORD));
}

#[tokio::test]
async fn caller_json_is_stored_as_the_exact_text_sent_and_read_back_equal() {
    let schema = schema_or_skip!("json_text");
    let store = store(&schema).await;
    let state = json!({"z": 1, "a": [1.6666666666666665, null, {"y": "é", "b": 1e300}], "m": null});
    let mut new = NewFlow::new("ctl", "goal");
    new.state_json = Some(state.clone());
    new.wait_json = Some(serde_json::Value::Null);
    let flow = store.create_flow("owner", new).await.unwrap();
    let text: String = schema
        .admin()
        .await
        .query_one(
            "SELECT state_json::text FROM taskflow_flows WHERE flow_id = $1",
            &[&flow.flow_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(text, serde_json::to_string(&state).unwrap());
    let read = store
        .get_flow("owner", &flow.id_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.state_json, Some(state.clone()));
    assert_eq!(
        read.wait_json,
        Some(serde_json::Value::Null),
        "a stored null is not unset"
    );
    assert_eq!(
        serde_json::to_string(&read.state_json).unwrap(),
        serde_json::to_string(&state).unwrap(),
        "key order survives"
    );
}

#[tokio::test]
async fn two_stores_on_one_schema_apply_exactly_one_of_sixteen_writers() {
    let schema = schema_or_skip!("two_stores_revision");
    let (a, b) = (store(&schema).await, store(&schema).await);
    let flow = a
        .create_flow("owner", NewFlow::new("ctl", "goal"))
        .await
        .unwrap();
    let id = flow.id_string();
    let writers = (0..16).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        tokio::spawn(async move {
            store
                .mutate_flow("owner", &id, 0, Mutation::RequestCancel)
                .await
                .unwrap()
        })
    });
    let mut applied = 0;
    for writer in writers.collect::<Vec<_>>() {
        match writer.await.unwrap() {
            MutationOutcome::Applied(flow) => {
                applied += 1;
                assert_eq!(flow.revision, 1);
            }
            MutationOutcome::RevisionConflict(flow) => assert_eq!(flow.revision, 1),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(applied, 1);
}

#[tokio::test]
async fn two_stores_never_take_an_owner_past_its_flow_cap() {
    let schema = schema_or_skip!("two_stores_cap");
    let config = MemoryStoreConfig::default().max_flows_per_owner(Some(5));
    let a = PostgresStore::connect(&schema.url(), config.clone())
        .await
        .unwrap();
    let b = PostgresStore::connect(&schema.url(), config).await.unwrap();
    let creates = (0..24).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { store.create_flow("owner", NewFlow::new("c", "g")).await })
    });
    let mut created = 0;
    for create in creates.collect::<Vec<_>>() {
        match create.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::CapacityExceeded) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(a.list_flows("owner").await.unwrap().len(), 5);
}

#[tokio::test]
async fn the_same_run_id_on_two_stores_at_once_creates_one_task() {
    let schema = schema_or_skip!("two_stores_run_id");
    let (a, b) = (store(&schema).await, store(&schema).await);
    let flow = a
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    let runs = (0..16).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = flow.id_string();
        tokio::spawn(async move {
            let mut new = NewTask::new(Runtime::Subagent, "do it");
            new.run_id = Some("run-1".into());
            store.run_task("owner", &id, new).await.unwrap()
        })
    });
    let mut task_ids = std::collections::HashSet::new();
    let mut created = 0;
    for run in runs.collect::<Vec<_>>() {
        match run.await.unwrap() {
            RunTaskOutcome::Created { task, .. } => {
                created += 1;
                task_ids.insert(task.task_id);
            }
            RunTaskOutcome::Existing { task, .. } => {
                task_ids.insert(task.task_id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created, task_ids.len()), (1, 1));
    let summary = b
        .task_summary("owner", &flow.id_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.total(), 1);
}

#[tokio::test]
async fn a_long_task_text_with_a_run_id_is_still_idempotent() {
    // The repeat key is a digest: a task text longer than a btree entry can hold still works.
    let schema = schema_or_skip!("long_task");
    let store = store(&schema).await;
    let flow = store
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    let new = || {
        let mut new = NewTask::new(Runtime::Acp, "x".repeat(100_000));
        new.run_id = Some("r".repeat(10_000));
        new
    };
    let first = store
        .run_task("owner", &flow.id_string(), new())
        .await
        .unwrap();
    let again = store
        .run_task("owner", &flow.id_string(), new())
        .await
        .unwrap();
    let (RunTaskOutcome::Created { task: a, .. }, RunTaskOutcome::Existing { task: b, .. }) =
        (first, again)
    else {
        panic!("expected created then existing");
    };
    assert_eq!(a.task_id, b.task_id);
}

#[tokio::test]
async fn byte_counts_in_the_owner_row_match_the_rows_after_every_kind_of_write() {
    let schema = schema_or_skip!("byte_counts");
    let store = store(&schema).await;
    let admin = schema.admin().await;
    let check = || async {
        let row = admin
            .query_one(
                "SELECT o.flows, o.bytes,
                    (SELECT count(*) FROM taskflow_flows),
                    (SELECT coalesce(sum(flow_bytes), 0)::bigint FROM taskflow_flows)
                    + (SELECT coalesce(sum(task_bytes), 0)::bigint FROM taskflow_tasks),
                    (SELECT coalesce(sum(task_bytes), 0)::bigint FROM taskflow_flows)
                    - (SELECT coalesce(sum(task_bytes), 0)::bigint FROM taskflow_tasks)
                 FROM taskflow_owners o WHERE owner_key = 'owner'",
                &[],
            )
            .await
            .unwrap();
        let (flows, bytes, rows, row_bytes, drift): (i64, i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!((flows, bytes, drift), (rows, row_bytes, 0));
    };
    let mut new = NewFlow::new("c", "g");
    new.state_json = Some(json!({"k": "v"}));
    let flow = store.create_flow("owner", new).await.unwrap();
    check().await;
    let id = flow.id_string();
    let outcome = store
        .mutate_flow(
            "owner",
            &id,
            0,
            Mutation::Resume {
                status: tower_webhooks::taskflow::FlowStatus::Running,
                current_step: tower_webhooks::taskflow::Patch::Set("a longer step".into()),
                state_json: Some(json!({"grown": "x".repeat(300)})),
            },
        )
        .await
        .unwrap();
    assert!(matches!(outcome, MutationOutcome::Applied(_)));
    check().await;
    let RunTaskOutcome::Created { task, .. } = store
        .run_task("owner", &id, NewTask::new(Runtime::Acp, "t"))
        .await
        .unwrap()
    else {
        panic!()
    };
    check().await;
    store
        .report_progress(&task.id_string(), Some("half way there".into()))
        .await
        .unwrap();
    check().await;
    store.cancel_flow("owner", &id).await.unwrap();
    check().await;
}

#[tokio::test]
async fn a_subscriber_on_one_store_hears_a_change_made_on_another_by_id() {
    use tower_webhooks::taskflow::{Change, ChangeEvent, ChangeFeed, ChangeKind};
    let schema = schema_or_skip!("feed_across");
    let (a, b) = (store(&schema).await, store(&schema).await);
    // `connect` returns once the feed listens: nothing to wait for.
    let mut heard = b.subscribe();
    let flow = a
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    let id = flow.id_string();
    let RunTaskOutcome::Created { task, .. } = a
        .run_task("owner", &id, NewTask::new(Runtime::Acp, "t"))
        .await
        .unwrap()
    else {
        panic!("no task created")
    };
    a.mutate_flow("owner", &id, 0, Mutation::RequestCancel)
        .await
        .unwrap();
    // Refused (cancel requested): a refused change sends nothing.
    let refused = a
        .run_task("owner", &id, NewTask::new(Runtime::Acp, "t2"))
        .await
        .unwrap();
    assert!(matches!(refused, RunTaskOutcome::CancelRequested(_)));
    let expected = [
        Change::flow(ChangeKind::FlowCreated, flow.flow_id),
        Change::task(ChangeKind::TaskCreated, flow.flow_id, task.task_id),
        Change::flow(ChangeKind::FlowUpdated, flow.flow_id),
    ];
    for change in expected {
        assert_eq!(next(&mut heard).await, ChangeEvent::Changed(change));
    }
    b.end_flow(&id, tower_webhooks::taskflow::FlowEnd::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut heard).await,
        ChangeEvent::Changed(Change::flow(ChangeKind::FlowUpdated, flow.flow_id))
    );
}

#[tokio::test]
async fn a_feed_that_lost_its_connection_says_lagged_and_hears_changes_again() {
    use tower_webhooks::taskflow::{Change, ChangeEvent, ChangeFeed, ChangeKind};
    let schema = schema_or_skip!("feed_lagged");
    let store = store(&schema).await;
    let mut heard = store.subscribe();
    wait_for_listeners(&schema, 1).await;
    let admin = schema.admin().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'tower-webhooks-changes'
               AND query LIKE 'LISTEN \"tower_webhooks:' || $1 || '\"%'",
            &[&schema.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    assert_eq!(next(&mut heard).await, ChangeEvent::Lagged);
    let flow = store
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut heard).await,
        ChangeEvent::Changed(Change::flow(ChangeKind::FlowCreated, flow.flow_id))
    );
}

async fn next(
    subscription: &mut tower_webhooks::taskflow::ChangeSubscription,
) -> tower_webhooks::taskflow::ChangeEvent {
    tokio::time::timeout(std::time::Duration::from_secs(20), subscription.recv())
        .await
        .expect("no change event within 20 s")
        .expect("the feed closed")
}

/// Waits until `count` change-feed connections listen on this schema's channel (the server is
/// asked; nothing is slept on).
async fn wait_for_listeners(schema: &TestSchema, count: i64) {
    let admin = schema.admin().await;
    let channel = format!("LISTEN \"tower_webhooks:{}\"", schema.name);
    for _ in 0..2000 {
        let listening: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'tower-webhooks-changes' AND query = $1",
                &[&channel],
            )
            .await
            .unwrap()
            .get(0);
        if listening >= count {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the change feed never listened");
}

#[tokio::test]
async fn a_database_outage_answers_persist_failed_changes_nothing_and_recovers_by_itself() {
    use postgres_support::TcpProxy;
    let schema = schema_or_skip!("outage");
    let base = std::env::var(postgres_support::ENV).unwrap();
    let proxy = TcpProxy::start(&base).await;
    let options = PostgresOptions::default()
        .operation_timeout(std::time::Duration::from_secs(5))
        .connect_timeout(std::time::Duration::from_secs(2));
    let store = PostgresStore::build(
        &proxy.url(&base, &schema.name),
        MemoryStoreConfig::default(),
        options,
        tower_webhooks::clock::SystemClock::shared(),
        std::sync::Arc::new(tower_webhooks::taskflow::CancelImmediately),
    )
    .await
    .unwrap();
    let flow = store
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    let id = flow.id_string();
    proxy.cut();
    let started = std::time::Instant::now();
    let error = store
        .mutate_flow("owner", &id, 0, Mutation::RequestCancel)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::PersistFailed(_)), "{error:?}");
    assert!(
        store
            .create_flow("owner", NewFlow::new("c", "g"))
            .await
            .unwrap_err()
            .is_persist_failure()
    );
    assert!(
        store
            .get_flow("owner", &id)
            .await
            .unwrap_err()
            .is_persist_failure()
    );
    assert!(
        store.check().await.is_err(),
        "readiness says the backend is gone"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "refused connections answer at once, not after a hang"
    );
    proxy.restore();
    // Back: the same store, no restart; the failed writes changed nothing.
    store.check().await.unwrap();
    assert_eq!(
        store.get_flow("owner", &id).await.unwrap(),
        Some(flow.clone())
    );
    assert_eq!(store.list_flows("owner").await.unwrap().len(), 1);
    let outcome = store
        .mutate_flow("owner", &id, 0, Mutation::RequestCancel)
        .await
        .unwrap();
    assert!(
        matches!(outcome, MutationOutcome::Applied(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_connection_lost_during_commit_is_reported_as_an_unknown_outcome() {
    use postgres_support::TcpProxy;
    let schema = schema_or_skip!("unknown_outcome");
    let base = std::env::var(postgres_support::ENV).unwrap();
    let proxy = TcpProxy::start(&base).await;
    let store = PostgresStore::connect(
        &proxy.url(&base, &schema.name),
        MemoryStoreConfig::default(),
    )
    .await
    .unwrap();
    let flow = store
        .create_flow("owner", NewFlow::new("c", "g"))
        .await
        .unwrap();
    let id = flow.id_string();
    proxy.cut_after_next_commit();
    let error = store
        .mutate_flow("owner", &id, 0, Mutation::RequestCancel)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::OutcomeUnknown(_)), "{error:?}");
    assert!(error.is_persist_failure());
    // Whichever way it went, the store answers again and the flow is at revision 0 or 1.
    let now = store.get_flow("owner", &id).await.unwrap().unwrap();
    assert!(now.revision <= 1, "{now:?}");
}

/// Text is stored as sent, so an operator reading the table sees it; only a value PostgreSQL's
/// `text` cannot hold (U+0000) is stored escaped, and it still reads back as sent.
#[tokio::test]
async fn text_is_stored_as_sent_unless_it_holds_a_nul() {
    let schema = schema_or_skip!("text_columns");
    let store = store(&schema).await;
    let plain = store
        .create_flow(
            "owner",
            NewFlow::new("ctl", "Review PR #7: \"quotes\" \\ é"),
        )
        .await
        .unwrap();
    let nul = store
        .create_flow("owner", NewFlow::new("ctl", "a\0b"))
        .await
        .unwrap();
    let admin = schema.admin().await;
    let stored = |flow: &tower_webhooks::taskflow::Flow| {
        let admin = &admin;
        let id = flow.flow_id;
        async move {
            admin
                .query_one("SELECT goal FROM taskflow_flows WHERE flow_id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(stored(&plain).await, "Review PR #7: \"quotes\" \\ é");
    assert_eq!(stored(&nul).await, "\u{e000}\"a\\u0000b\"");
    let read = store
        .get_flow("owner", &nul.id_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.goal, "a\0b");
}
