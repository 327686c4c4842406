//! The tables, as versioned migrations applied at startup.
//!
//! Every table is created unqualified, so it lands in the first schema of the connection's
//! `search_path` (set it with `?options=-csearch_path%3Dmy_schema` in the URL): one database can
//! hold several independent stores, and each test gets its own schema.
//!
//! Replicas starting at once serialise on a transaction-scoped advisory lock keyed by the schema,
//! so each migration runs exactly once; DDL is transactional in PostgreSQL, so a migration that
//! fails leaves nothing half-built.

use tokio_postgres::Client;

use crate::taskflow::store::StoreError;
use crate::taskflow::store::migrate::{self, CURRENT_VERSION, Migration, SCHEMA_VERSION_TABLE};

static MIGRATIONS: [Migration; 2] = [
    Migration {
        version: 1,
        name: "owners, flows and tasks",
        sql: r#"
-- One row per owner session: the counters the caps are checked against. Every write locks its
-- owner's row first, so the caps hold under READ COMMITTED on any number of replicas, where a
-- count(*) would let two concurrent inserts both see room.
CREATE TABLE taskflow_owners (
    owner_key text PRIMARY KEY,
    flows bigint NOT NULL,
    bytes bigint NOT NULL
);

CREATE TABLE taskflow_flows (
    flow_id uuid PRIMARY KEY,
    -- Breaks createdAt ties (newest created first) in the same order on every replica.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    owner_key text NOT NULL,
    sync_mode text NOT NULL,
    controller_id text NOT NULL,
    revision bigint NOT NULL,
    status text NOT NULL,
    notify_policy text NOT NULL,
    goal text NOT NULL,
    current_step text,
    blocked_task_id text,
    blocked_summary text,
    -- json, not jsonb: the text comes back exactly as stored (key order, number spelling).
    -- SQL NULL is "unset"; the JSON literal null is a stored null.
    state_json json,
    wait_json json,
    cancel_requested_at bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    ended_at bigint,
    -- cancel_flow answered cancel_pending: the flow becomes cancelled when its last task ends.
    cancel_pending boolean NOT NULL DEFAULT false,
    -- JSON size of the stored record, and of its tasks: what maxBytesPerOwner caps.
    flow_bytes bigint NOT NULL,
    task_bytes bigint NOT NULL DEFAULT 0,
    task_count integer NOT NULL DEFAULT 0
);

CREATE INDEX taskflow_flows_by_owner ON taskflow_flows (owner_key, created_at DESC, seq DESC);

CREATE INDEX taskflow_flows_expiry ON taskflow_flows ((coalesce(ended_at, updated_at)))
    WHERE status IN ('succeeded', 'failed', 'cancelled', 'lost');

CREATE TABLE taskflow_tasks (
    task_id uuid PRIMARY KEY,
    flow_id uuid NOT NULL REFERENCES taskflow_flows ON DELETE CASCADE,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    -- SHA-256 of what NewTask::is_repeat_of compares (runId, runtime, childSessionKey, label,
    -- task), NULL without a runId: a fixed-size key, where the fields themselves may exceed
    -- what a btree entry holds.
    repeat_key bytea,
    owner_key text NOT NULL,
    requester_session_key text NOT NULL,
    runtime text NOT NULL,
    source_id text,
    child_session_key text,
    parent_task_id text,
    agent_id text,
    run_id text,
    label text,
    task text NOT NULL,
    status text NOT NULL,
    notify_policy text NOT NULL,
    prefer_metadata boolean,
    created_at bigint NOT NULL,
    started_at bigint,
    ended_at bigint,
    last_event_at bigint,
    progress_summary text,
    task_bytes bigint NOT NULL
);

CREATE INDEX taskflow_tasks_by_flow ON taskflow_tasks (flow_id, seq);

CREATE UNIQUE INDEX taskflow_tasks_repeat ON taskflow_tasks (flow_id, repeat_key)
    WHERE repeat_key IS NOT NULL;
"#,
    },
    Migration {
        version: 2,
        name: "event routes' idempotency keys",
        sql: r#"
-- One row per key an event route claimed or recorded (SPEC §8), shared by every replica. The key
-- is kept as its SHA-256: a fixed-size index entry whatever a sender puts in a header or a body.
CREATE TABLE taskflow_idempotency_keys (
    route_id text NOT NULL,
    key_hash bytea NOT NULL,
    -- The claim's token while its delivery is handled; NULL once the key is recorded.
    claim_token bigint,
    -- When the claim lapses, or when the record is forgotten.
    expires_at bigint NOT NULL,
    PRIMARY KEY (route_id, key_hash)
);

CREATE INDEX taskflow_idempotency_keys_expiry ON taskflow_idempotency_keys (expires_at);
"#,
    },
];

/// The schema version this build writes.
pub(super) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub(super) enum SchemaError {
    /// The `search_path` selects no existing schema.
    NoSchema,
    /// The database was written by a newer version ([`StoreError::SchemaTooNew`]).
    Refused(StoreError),
    /// The database refused a statement.
    Driver(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for SchemaError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Driver(error)
    }
}

/// Brings the schema selected by the connection's `search_path` up to [`LATEST`]; returns the
/// schema's name.
pub(super) async fn migrate(client: &mut Client) -> Result<String, SchemaError> {
    let transaction = client.transaction().await?;
    let schema: Option<String> = transaction
        .query_one("SELECT current_schema()", &[])
        .await?
        .get(0);
    let schema = schema.ok_or(SchemaError::NoSchema)?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('tower-webhooks:' || current_schema()))",
            &[],
        )
        .await?;
    transaction.batch_execute(SCHEMA_VERSION_TABLE).await?;
    let found: i32 = transaction.query_one(CURRENT_VERSION, &[]).await?.get(0);
    let pending = migrate::pending(&MIGRATIONS, u32::try_from(found).unwrap_or(0))
        .map_err(SchemaError::Refused)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for migration in pending {
        transaction.batch_execute(migration.sql).await?;
        let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
        transaction
            .execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                &[&version, &migration.name, &now],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(schema)
}
