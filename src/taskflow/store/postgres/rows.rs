//! Records to rows and back.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use crate::taskflow::model::{Flow, FlowStatus, NotifyPolicy, Runtime, SyncMode, Task, TaskStatus};
use crate::taskflow::store::{NewTask, StoreError};

/// A flow row with what the store keeps beside the record.
#[derive(Debug)]
pub(super) struct FlowRow {
    pub(super) flow: Flow,
    pub(super) flow_bytes: i64,
    pub(super) cancel_pending: bool,
    pub(super) task_count: i32,
}

/// A task row with its measured size.
#[derive(Debug)]
pub(super) struct TaskRow {
    pub(super) task: Task,
    pub(super) task_bytes: i64,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::PersistFailed(format!("stored row has an unreadable {what}"))
}

/// Timestamps and counters are `u64` in the records and `bigint` in the tables. Every value the
/// webhook surface accepts is at most 2^53; an embedding application's larger one is saturated.
pub(super) fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn opt_to_db(value: Option<u64>) -> Option<i64> {
    value.map(to_db)
}

fn from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

fn opt_from_db(value: Option<i64>, what: &str) -> Result<Option<u64>, StoreError> {
    value.map(|v| from_db(v, what)).transpose()
}

/// A size as the tables count it.
pub(super) fn bytes_to_db(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Marks a text column's value as escaped. A private-use character: no sender's text starts with it
/// by accident, and one that does is escaped too, so reading is never ambiguous.
const ESCAPED: char = '\u{e000}';

/// A caller's text as a `text` parameter. PostgreSQL's `text` cannot hold U+0000, which JSON
/// allows and the other stores keep: a value holding one (or starting with [`ESCAPED`]) is stored
/// as [`ESCAPED`] and its JSON string literal (`"a\u0000b"`), everything else exactly as sent, so
/// an operator reading the table sees plain text. [`text`] reverses it.
pub(super) fn text_param(value: &str) -> Cow<'_, str> {
    if value.contains('\0') || value.starts_with(ESCAPED) {
        let mut escaped = String::with_capacity(value.len() + 8);
        escaped.push(ESCAPED);
        escaped.push_str(&Value::from(value).to_string());
        Cow::Owned(escaped)
    } else {
        Cow::Borrowed(value)
    }
}

/// [`text_param`] of an optional text.
pub(super) fn opt_text_param(value: &Option<String>) -> Option<Cow<'_, str>> {
    value.as_deref().map(text_param)
}

/// A caller's text as stored by [`text_param`].
fn text(stored: String) -> Result<String, StoreError> {
    match stored.strip_prefix(ESCAPED) {
        Some(literal) => serde_json::from_str(literal).map_err(|_| corrupt("escaped text")),
        None => Ok(stored),
    }
}

fn opt_text(stored: Option<String>) -> Result<Option<String>, StoreError> {
    stored.map(text).transpose()
}

/// Caller JSON as a parameter: `None` is SQL `NULL` (unset), `Some(Value::Null)` the JSON
/// literal `null`.
pub(super) fn json_param(value: &Option<Value>) -> Option<Json<&Value>> {
    value.as_ref().map(Json)
}

fn json_column(row: &Row, index: usize) -> Result<Option<Value>, StoreError> {
    row.try_get::<_, Option<Json<Value>>>(index)
        .map(|v| v.map(|Json(v)| v))
        .map_err(|_| corrupt("JSON column"))
}

fn wire<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| corrupt(what))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &str,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|_| corrupt(what))
}

/// Reads a row selected with the flow columns of `sql.rs`, starting at column `at`.
pub(super) fn flow(row: &Row, at: usize) -> Result<FlowRow, StoreError> {
    let text = |i: usize, what: &str| get::<String>(row, at + i, what);
    let flow = Flow {
        flow_id: get(row, at, "flow id")?,
        sync_mode: wire(&text(1, "sync mode")?, SyncMode::from_wire, "sync mode")?,
        owner_key: Arc::from(text(2, "owner")?),
        controller_id: self::text(text(3, "controller id")?)?,
        revision: from_db(get(row, at + 4, "revision")?, "revision")?,
        status: wire(&text(5, "status")?, FlowStatus::from_wire, "status")?,
        notify_policy: wire(
            &text(6, "notify policy")?,
            NotifyPolicy::from_wire,
            "policy",
        )?,
        goal: self::text(text(7, "goal")?)?,
        current_step: opt_text(get(row, at + 8, "current step")?)?,
        blocked_task_id: opt_text(get(row, at + 9, "blocked task id")?)?,
        blocked_summary: opt_text(get(row, at + 10, "blocked summary")?)?,
        state_json: json_column(row, at + 11)?,
        wait_json: json_column(row, at + 12)?,
        cancel_requested_at: opt_from_db(get(row, at + 13, "time")?, "time")?,
        created_at: from_db(get(row, at + 14, "time")?, "time")?,
        updated_at: from_db(get(row, at + 15, "time")?, "time")?,
        ended_at: opt_from_db(get(row, at + 16, "time")?, "time")?,
    };
    Ok(FlowRow {
        flow,
        flow_bytes: get(row, at + 17, "size")?,
        cancel_pending: get(row, at + 19, "cancel flag")?,
        task_count: get(row, at + 20, "task count")?,
    })
}

/// Reads a row selected with the task columns of `sql.rs`, starting at column `at`.
pub(super) fn task(row: &Row, at: usize) -> Result<TaskRow, StoreError> {
    let text = |i: usize, what: &str| get::<String>(row, at + i, what);
    let opt = |i: usize, what: &str| opt_text(get::<Option<String>>(row, at + i, what)?);
    let task = Task {
        task_id: get(row, at, "task id")?,
        runtime: wire(&text(1, "runtime")?, Runtime::from_wire, "runtime")?,
        source_id: opt(2, "source id")?,
        child_session_key: opt(3, "child session key")?,
        parent_flow_id: get(row, at + 4, "flow id")?,
        parent_task_id: opt(5, "parent task id")?,
        agent_id: opt(6, "agent id")?,
        run_id: opt(7, "run id")?,
        label: opt(8, "label")?,
        task: self::text(text(9, "task")?)?,
        status: wire(&text(10, "status")?, TaskStatus::from_wire, "status")?,
        notify_policy: wire(&text(11, "policy")?, NotifyPolicy::from_wire, "policy")?,
        prefer_metadata: get(row, at + 12, "flag")?,
        created_at: from_db(get(row, at + 13, "time")?, "time")?,
        started_at: opt_from_db(get(row, at + 14, "time")?, "time")?,
        ended_at: opt_from_db(get(row, at + 15, "time")?, "time")?,
        last_event_at: opt_from_db(get(row, at + 16, "time")?, "time")?,
        progress_summary: opt(17, "progress summary")?,
        owner_key: Arc::from(text(18, "owner")?),
        requester_session_key: Arc::from(text(19, "requester")?),
    };
    Ok(TaskRow {
        task,
        task_bytes: get(row, at + 20, "size")?,
    })
}

/// The `repeat_key` of a task: a digest of exactly what [`NewTask::is_repeat_of`] compares, each
/// field length-prefixed and tagged present or absent, so that no two different tuples share an
/// encoding. `None` without a `runId`, which never repeats.
pub(super) fn repeat_key(
    run_id: Option<&str>,
    runtime: Runtime,
    child_session_key: Option<&str>,
    label: Option<&str>,
    task: &str,
) -> Option<Vec<u8>> {
    let run_id = run_id?;
    let mut hash = Sha256::new();
    for field in [
        Some(run_id),
        Some(runtime.as_str()),
        child_session_key,
        label,
        Some(task),
    ] {
        match field {
            None => hash.update([0]),
            Some(text) => {
                hash.update([1]);
                hash.update((text.len() as u64).to_be_bytes());
                hash.update(text.as_bytes());
            }
        }
    }
    Some(hash.finalize().to_vec())
}

/// [`repeat_key`] of a task about to be created.
pub(super) fn new_task_repeat_key(new: &NewTask) -> Option<Vec<u8>> {
    repeat_key(
        new.run_id.as_deref(),
        new.runtime,
        new.child_session_key.as_deref(),
        new.label.as_deref(),
        &new.task,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_keys_tell_absent_from_empty_and_do_not_run_fields_together() {
        let key = |child, label, task| repeat_key(Some("r"), Runtime::Acp, child, label, task);
        assert_eq!(repeat_key(None, Runtime::Acp, None, None, "t"), None);
        assert_eq!(key(None, None, "t"), key(None, None, "t"));
        assert_ne!(key(None, None, "t"), key(Some(""), None, "t"));
        assert_ne!(key(Some("ab"), None, "t"), key(None, Some("ab"), "t"));
        assert_ne!(
            key(Some("a"), Some("b"), "t"),
            key(Some("ab"), Some(""), "t")
        );
        assert_ne!(
            key(None, None, "t"),
            repeat_key(Some("r"), Runtime::Subagent, None, None, "t")
        );
    }
}
