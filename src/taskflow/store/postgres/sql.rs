//! The statements, in one place, so the locking rules can be read together.
//!
//! Lock order, the same for every write: the owner's counter row first (`taskflow_owners`, which
//! serialises the writes of one owner on every replica, as the in-memory store's per-owner mutex
//! does in one process), then the flow, then its tasks. The retention sweep keeps the same order,
//! so no two transactions ever wait for each other in a cycle.

// `concat!` takes literals, not `const` items: the column lists are macros so that every
// statement reads the same columns in the order the readers in `rows.rs` expect.
macro_rules! flow_columns {
    () => {
        "flow_id, sync_mode, owner_key, controller_id, revision, status, notify_policy, goal, \
         current_step, blocked_task_id, blocked_summary, state_json, wait_json, \
         cancel_requested_at, created_at, updated_at, ended_at, flow_bytes, task_bytes, \
         cancel_pending, task_count"
    };
}

macro_rules! task_columns {
    () => {
        "task_id, runtime, source_id, child_session_key, flow_id, parent_task_id, agent_id, \
         run_id, label, task, status, notify_policy, prefer_metadata, created_at, started_at, \
         ended_at, last_event_at, progress_summary, owner_key, requester_session_key, task_bytes"
    };
}

/// A terminal flow whose retention has passed (`$cutoff` is now minus the retention period):
/// invisible to every call from that moment, whether or not a sweep has removed it yet.
macro_rules! expired {
    ($alias:literal, $cutoff:literal) => {
        concat!(
            $alias,
            "status IN ('succeeded', 'failed', 'cancelled', 'lost') AND coalesce(",
            $alias,
            "ended_at, ",
            $alias,
            "updated_at) <= ",
            $cutoff
        )
    };
}

/// Counts the flow against its owner's caps and inserts it, in one statement: the owner's row is
/// created or locked by the upsert, whose `WHERE` sees the latest committed counts, so concurrent
/// creates on any replica never take an owner past a cap. The insert and the notification only
/// happen if the count did. A brand-new owner's first flow is checked against the caps by the
/// caller (the upsert's `WHERE` only guards the update branch).
pub(super) const CREATE_FLOW: &str = "WITH counted AS (
        INSERT INTO taskflow_owners AS o (owner_key, flows, bytes) VALUES ($1, 1, $2)
        ON CONFLICT (owner_key) DO UPDATE
            SET flows = o.flows + 1, bytes = o.bytes + excluded.bytes
            WHERE o.flows < $3 AND o.bytes + excluded.bytes <= $4
        RETURNING 1
    ), created AS (
        INSERT INTO taskflow_flows (flow_id, owner_key, sync_mode, controller_id, revision,
            status, notify_policy, goal, current_step, state_json, wait_json, created_at,
            updated_at, ended_at, flow_bytes)
        SELECT $5, $1, $6, $7, 0, $8, $9, $10, $11, $12, $13, $14, $14, $15, $2 FROM counted
        RETURNING flow_id
    )
    SELECT pg_notify($16, $17)::text FROM created";

/// Locks the owner's counter row for the rest of the transaction; no row, no flows.
pub(super) const LOCK_OWNER: &str =
    "SELECT flows, bytes FROM taskflow_owners WHERE owner_key = $1 FOR UPDATE";

pub(super) const GET_FLOW: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM taskflow_flows WHERE flow_id = $1 AND owner_key = $2 AND NOT (",
    expired!("", "$3"),
    ")"
);

pub(super) const GET_FLOW_BY_ID: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM taskflow_flows WHERE flow_id = $1 AND NOT (",
    expired!("", "$2"),
    ")"
);

/// Newest `createdAt` first; ties broken by the creation sequence, newest first. Both come from
/// the table, so every replica answers the same order.
pub(super) const LIST_FLOWS: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM taskflow_flows WHERE owner_key = $1 AND NOT (",
    expired!("", "$2"),
    ") ORDER BY created_at DESC, seq DESC"
);

pub(super) const LATEST_FLOW: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM taskflow_flows WHERE owner_key = $1 AND NOT (",
    expired!("", "$2"),
    ") ORDER BY created_at DESC, seq DESC LIMIT 1"
);

/// `resolve_flow` by session key: the newest non-terminal flow, or failing that the newest.
pub(super) const RESOLVE_LATEST: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM taskflow_flows WHERE owner_key = $1 AND NOT (",
    expired!("", "$2"),
    ") ORDER BY status IN ('succeeded', 'failed', 'cancelled', 'lost'), created_at DESC, seq DESC
      LIMIT 1"
);

/// Writes a flow's mutable state, checked and set on the revision the caller read: the change
/// applies only if nobody changed the flow in between, whatever locks the caller holds. The
/// owner's byte count moves by the size difference in the same statement, and only if the flow
/// was written; so does the notification.
pub(super) const WRITE_FLOW: &str = concat!(
    "WITH changed AS (
        UPDATE taskflow_flows SET revision = $3, status = $4, current_step = $5,
            blocked_task_id = $6, blocked_summary = $7, state_json = $8, wait_json = $9,
            cancel_requested_at = $10, updated_at = $11, ended_at = $12, cancel_pending = $13,
            flow_bytes = $14
        WHERE flow_id = $1 AND revision = $2
        RETURNING ",
    flow_columns!(),
    "
    ), counted AS (
        UPDATE taskflow_owners SET bytes = bytes + $15::bigint
        WHERE owner_key = $16 AND $15::bigint <> 0 AND EXISTS (SELECT 1 FROM changed)
    )
    SELECT ",
    flow_columns!(),
    ", pg_notify($17, $18)::text FROM changed"
);

/// The flow's task with the same `repeat_key`: a `run_task` repeat.
pub(super) const FIND_REPEAT: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM taskflow_tasks WHERE flow_id = $1 AND repeat_key = $2"
);

/// Inserts a task unless one with the same `repeat_key` exists; counts it on the flow and the
/// owner, and notifies, only if it was inserted.
pub(super) const INSERT_TASK: &str = concat!(
    "WITH inserted AS (
        INSERT INTO taskflow_tasks (task_id, flow_id, repeat_key, owner_key,
            requester_session_key, runtime, source_id, child_session_key, parent_task_id,
            agent_id, run_id, label, task, status, notify_policy, prefer_metadata, created_at,
            started_at, ended_at, last_event_at, progress_summary, task_bytes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22)
        ON CONFLICT (flow_id, repeat_key) WHERE repeat_key IS NOT NULL DO NOTHING
        RETURNING ",
    task_columns!(),
    "
    ), on_flow AS (
        UPDATE taskflow_flows SET task_count = task_count + 1, task_bytes = task_bytes + $22
        WHERE flow_id = $2 AND EXISTS (SELECT 1 FROM inserted)
    ), on_owner AS (
        UPDATE taskflow_owners SET bytes = bytes + $22
        WHERE owner_key = $4 AND EXISTS (SELECT 1 FROM inserted)
    )
    SELECT ",
    task_columns!(),
    ", pg_notify($23, $24)::text FROM inserted"
);

pub(super) const LIST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM taskflow_tasks WHERE flow_id = $1 ORDER BY seq"
);

/// The flow's tasks counted by status and runtime, if the owner owns the flow; one row with
/// `NULL` counts when it has none.
pub(super) const SUMMARY: &str = concat!(
    "SELECT t.status, t.runtime, count(t.task_id)
    FROM taskflow_flows f LEFT JOIN taskflow_tasks t ON t.flow_id = f.flow_id
    WHERE f.flow_id = $1 AND f.owner_key = $2 AND NOT (",
    expired!("f.", "$3"),
    ") GROUP BY t.status, t.runtime"
);

pub(super) const GET_TASK: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM taskflow_tasks WHERE task_id = $1 AND NOT EXISTS (
        SELECT 1 FROM taskflow_flows f WHERE f.flow_id = taskflow_tasks.flow_id AND ",
    expired!("f.", "$2"),
    ")"
);

/// A task's owner, read before its lock is taken (the owner of a task never changes).
pub(super) const TASK_OWNER: &str = "SELECT owner_key FROM taskflow_tasks WHERE task_id = $1";

pub(super) const FLOW_OWNER: &str = "SELECT owner_key FROM taskflow_flows WHERE flow_id = $1";

/// Writes a task's mutable state; moves the flow's and owner's byte counts; notifies.
pub(super) const WRITE_TASK: &str = concat!(
    "WITH changed AS (
        UPDATE taskflow_tasks SET status = $2, started_at = $3, ended_at = $4,
            last_event_at = $5, progress_summary = $6, task_bytes = $7
        WHERE task_id = $1
        RETURNING ",
    task_columns!(),
    "
    ), on_flow AS (
        UPDATE taskflow_flows SET task_bytes = task_bytes + $8::bigint
        WHERE flow_id = $9 AND $8::bigint <> 0 AND EXISTS (SELECT 1 FROM changed)
    ), on_owner AS (
        UPDATE taskflow_owners SET bytes = bytes + $8::bigint
        WHERE owner_key = $10 AND $8::bigint <> 0 AND EXISTS (SELECT 1 FROM changed)
    )
    SELECT ",
    task_columns!(),
    ", pg_notify($11, $12)::text FROM changed"
);

/// Marks a cancellation pending (its last active task's end will finish it). Bookkeeping, not a
/// change a subscriber could see in the record: no notification.
pub(super) const MARK_CANCEL_PENDING: &str =
    "UPDATE taskflow_flows SET cancel_pending = true WHERE flow_id = $1";

/// Whether any task of the flow is still active.
pub(super) const ANY_ACTIVE: &str = "SELECT EXISTS (SELECT 1 FROM taskflow_tasks
    WHERE flow_id = $1 AND status IN ('queued', 'running'))";

/// Owners that hold a flow whose retention has passed: where the sweep has work.
pub(super) const EXPIRED_OWNERS: &str = concat!(
    "SELECT DISTINCT owner_key FROM taskflow_flows WHERE ",
    expired!("", "$1"),
    " LIMIT $2"
);

/// Deletes up to `$3` of one owner's expired flows with their tasks, and takes them off the
/// owner's counts; answers the ids removed (a task row has its task id, a flow row `NULL`). The
/// caller holds the owner's row lock, so no writer of that owner runs meanwhile and the rows
/// deleted are the rows counted.
pub(super) const SWEEP_OWNER: &str = concat!(
    "WITH doomed AS (
        SELECT flow_id FROM taskflow_flows WHERE owner_key = $1 AND ",
    expired!("", "$2"),
    " LIMIT $3
    ), gone_tasks AS (
        DELETE FROM taskflow_tasks t USING doomed d WHERE t.flow_id = d.flow_id
        RETURNING t.flow_id, t.task_id
    ), gone AS (
        DELETE FROM taskflow_flows f USING doomed d WHERE f.flow_id = d.flow_id
        RETURNING f.flow_id, f.flow_bytes + f.task_bytes AS bytes
    ), counted AS (
        UPDATE taskflow_owners SET flows = flows - (SELECT count(*) FROM gone),
            bytes = bytes - (SELECT coalesce(sum(bytes), 0) FROM gone)
        WHERE owner_key = $1 AND EXISTS (SELECT 1 FROM gone)
    )
    SELECT flow_id, task_id FROM (
        SELECT flow_id, task_id, 0 AS step FROM gone_tasks
        UNION ALL SELECT flow_id, NULL::uuid, 1 FROM gone
    ) removed ORDER BY flow_id, step"
);

/// One notification per payload, in one statement.
pub(super) const NOTIFY_MANY: &str =
    "SELECT pg_notify($1, payload)::text FROM unnest($2::text[]) AS payload";

/// Claims an idempotency key (`$1` route, `$2` key hash, `$3` token, `$4` when the claim lapses)
/// unless an unexpired row (`expires_at > $5`, now) holds it. Answers whether it claimed and, if
/// not, whether the row in the way is a record (`true`) or a claim (`false`); the outer `SELECT`
/// reads the snapshot from before the `INSERT`, so it sees the row that was in the way.
#[cfg(feature = "events")]
pub(super) const BEGIN_KEY: &str = "\
    WITH claimed AS ( \
        INSERT INTO taskflow_idempotency_keys AS k (route_id, key_hash, claim_token, expires_at) \
        VALUES ($1, $2, $3, $4) \
        ON CONFLICT (route_id, key_hash) DO UPDATE \
        SET claim_token = EXCLUDED.claim_token, expires_at = EXCLUDED.expires_at \
        WHERE k.expires_at <= $5 \
        RETURNING 1) \
    SELECT EXISTS (SELECT 1 FROM claimed), \
        (SELECT claim_token IS NULL FROM taskflow_idempotency_keys \
         WHERE route_id = $1 AND key_hash = $2)";

/// Records a key until `$4` if the claim `$3` still holds it, or if no row does (the claim lapsed
/// and was swept): a dispatched key must not be dispatched again.
#[cfg(feature = "events")]
pub(super) const COMPLETE_KEY: &str = "\
    INSERT INTO taskflow_idempotency_keys AS k (route_id, key_hash, claim_token, expires_at) \
    VALUES ($1, $2, NULL, $4) \
    ON CONFLICT (route_id, key_hash) DO UPDATE \
    SET claim_token = NULL, expires_at = EXCLUDED.expires_at \
    WHERE k.claim_token = $3";

/// Lets a key go if the claim `$3` still holds it.
#[cfg(feature = "events")]
pub(super) const ABANDON_KEY: &str = "\
    DELETE FROM taskflow_idempotency_keys \
    WHERE route_id = $1 AND key_hash = $2 AND claim_token = $3";

/// Deletes at most `$2` keys whose record or claim expired at or before `$1`.
pub(super) const FORGET_EXPIRED_KEYS: &str = "\
    DELETE FROM taskflow_idempotency_keys WHERE (route_id, key_hash) IN ( \
        SELECT route_id, key_hash FROM taskflow_idempotency_keys WHERE expires_at <= $1 LIMIT $2) \
    RETURNING 1";
