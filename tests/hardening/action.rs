//! Request bodies through `TaskFlowActionService` over `MemoryStore` (SPEC §2 steps 8–10, §3, §4).
//!
//! Every check starts from the same store: six flows in known states (one with a child task, one
//! running, one finished, one with a cancel request, one not managed, one owned by another
//! session). The body is either the input's bytes as they are or a request built from the input's
//! choices: a real action whose fields are kept, dropped or broken one by one (wrong type, empty,
//! whitespace, too long, negative, fractional, beyond `u64`), unknown keys, ids of every kind of
//! flow, right and wrong revisions.
//!
//! The oracle ([`validate`] and [`predict`]) is written from SPEC §3 and the crate's documented
//! choices, table-driven rather than copied from the crate: it gives the exact `invalid_request`
//! text for a bad body, or the status, code and store change for a good one. The check then
//! requires, besides that answer:
//!
//! - a refusal (any status >= 400) leaves every flow and task exactly as it was;
//! - a successful mutation advances that flow's revision by exactly one and touches nothing else;
//! - no answer carries an owner session key the request did not carry itself (the service is
//!   wrapped in `ScrubOwnerMetadata`, as in the pipeline).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tower::ServiceExt;
use tower_webhooks::{
    ScrubOwnerMetadata, TaskFlowActionService,
    body::BufferedBody,
    clock::ManualClock,
    scrub::ScrubConfig,
    taskflow::{
        CancelImmediately, FlowStatus, MemoryStore, MemoryStoreConfig, Mutation, NewFlow, NewTask,
        Runtime, SyncMode, Task, TaskFlowRoute, TaskFlowStore,
    },
};

use super::{Input, Outcome, ready};

/// The route's owner session.
pub const OWNER: &str = "agent:main:hooks";
/// Another session, whose flow the route must never see.
pub const OTHER_OWNER: &str = "agent:ops:hooks";
const ROUTE_ID: &str = "r";
const SEED_TASK: &str = "seed task";
const SEED_RUN: &str = "run-1";
const MAX_STRING: usize = 65_536;

const ACTIONS: [&str; 13] = [
    "create_flow",
    "get_flow",
    "list_flows",
    "find_latest_flow",
    "resolve_flow",
    "get_task_summary",
    "set_waiting",
    "resume_flow",
    "finish_flow",
    "fail_flow",
    "request_cancel",
    "cancel_flow",
    "run_task",
];

const FLOW_STATUSES: &[&str] = &["queued", "running", "waiting", "blocked"];
const RESUME_STATUSES: &[&str] = &["queued", "running"];
const NOTIFY: &[&str] = &["done_only", "state_changes", "silent"];
const RUNTIMES: &[&str] = &["subagent", "acp"];

/// How a field is validated (SPEC §3 "Types").
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Required non-empty string.
    Str,
    /// Optional string: absent or `null` is "not given" / "clear".
    OptStr,
    /// Any JSON value.
    Json,
    /// Required integer >= 0.
    Int,
    /// Optional integer >= 0, `null` allowed.
    OptInt,
    /// Optional boolean, `null` allowed.
    OptBool,
    /// Optional choice; `null` is not one of them.
    Choice(&'static [&'static str]),
    /// Required choice.
    ReqChoice(&'static [&'static str]),
}

use Kind::*;

/// The fields of each action, in the order they are checked (the SPEC table's order).
fn schema(action: &str) -> Option<&'static [(&'static str, Kind)]> {
    const TARGET: [(&str, Kind); 2] = [("flowId", Str), ("expectedRevision", Int)];
    Some(match action {
        "create_flow" => &[
            ("goal", Str),
            ("controllerId", OptStr),
            ("status", Choice(FLOW_STATUSES)),
            ("notifyPolicy", Choice(NOTIFY)),
            ("currentStep", OptStr),
            ("stateJson", Json),
            ("waitJson", Json),
        ],
        "get_flow" | "get_task_summary" | "cancel_flow" => &[("flowId", Str)],
        "list_flows" | "find_latest_flow" => &[],
        "resolve_flow" => &[("token", Str)],
        "set_waiting" => &[
            TARGET[0],
            TARGET[1],
            ("currentStep", OptStr),
            ("stateJson", Json),
            ("waitJson", Json),
            ("blockedTaskId", OptStr),
            ("blockedSummary", OptStr),
        ],
        "resume_flow" => &[
            TARGET[0],
            TARGET[1],
            ("status", Choice(RESUME_STATUSES)),
            ("currentStep", OptStr),
            ("stateJson", Json),
        ],
        "finish_flow" => &[TARGET[0], TARGET[1], ("stateJson", Json)],
        "fail_flow" => &[
            TARGET[0],
            TARGET[1],
            ("stateJson", Json),
            ("blockedTaskId", OptStr),
            ("blockedSummary", OptStr),
        ],
        "request_cancel" => &TARGET,
        "run_task" => &[
            ("flowId", Str),
            ("runtime", ReqChoice(RUNTIMES)),
            ("task", Str),
            ("sourceId", OptStr),
            ("childSessionKey", OptStr),
            ("parentTaskId", OptStr),
            ("agentId", OptStr),
            ("runId", OptStr),
            ("label", OptStr),
            ("preferMetadata", OptBool),
            ("notifyPolicy", Choice(NOTIFY)),
            ("status", Choice(RESUME_STATUSES)),
            ("startedAt", OptInt),
            ("lastEventAt", OptInt),
            ("progressSummary", OptStr),
        ],
        _ => return None,
    })
}

/// The fields the SPEC trims before use (§3); every other string is kept as sent.
const TRIMMED: &[&str] = &[
    "flowId",
    "currentStep",
    "blockedTaskId",
    "blockedSummary",
    "progressSummary",
];

/// JavaScript's `String.prototype.trim`: white space, the byte-order mark, every `Zs` space and the
/// line terminators (not U+0085).
fn js_trim(text: &str) -> &str {
    const JS_WHITE_SPACE: &[char] = &[
        '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}',
        '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
        '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
        '\u{feff}',
    ];
    text.trim_matches(JS_WHITE_SPACE)
}

fn check_string(name: &str, value: &Value) -> Result<(), String> {
    let Value::String(sent) = value else {
        return Err("must be a non-empty string".into());
    };
    let trimmed = js_trim(sent);
    let kept = if TRIMMED.contains(&name) {
        trimmed
    } else {
        sent
    };
    if trimmed.is_empty() {
        Err("must be a non-empty string".into())
    } else if kept.len() > MAX_STRING {
        Err(format!("must be at most {MAX_STRING} bytes"))
    } else {
        Ok(())
    }
}

/// An integer as `JSON.parse` sees it (`1.0` and `-0` are integers), up to 2^53 - 1.
fn integer(value: &Value) -> Result<u64, String> {
    const MAX_SAFE: u64 = 9_007_199_254_740_991;
    let n = value.as_f64().ok_or("must be an integer >= 0")?;
    if n.fract() != 0.0 || n < 0.0 {
        Err("must be an integer >= 0".into())
    } else if n > MAX_SAFE as f64 || value.as_u64().is_some_and(|n| n > MAX_SAFE) {
        Err("must be an integer from 0 to 9007199254740991".into())
    } else {
        Ok(n as u64)
    }
}

fn check_field(name: &str, kind: Kind, value: Option<&Value>) -> Result<(), String> {
    match (kind, value) {
        (Str | Int | ReqChoice(_), None) => Err("required".into()),
        (_, None) | (Json, _) => Ok(()),
        (OptStr | OptInt | OptBool, Some(Value::Null)) => Ok(()),
        (Str | OptStr, Some(v)) => check_string(name, v),
        (Int | OptInt, Some(v)) => integer(v).map(|_| ()),
        (OptBool, Some(v)) => match v {
            Value::Bool(_) => Ok(()),
            _ => Err("must be a boolean".into()),
        },
        (Choice(allowed) | ReqChoice(allowed), Some(v)) => {
            match v.as_str().filter(|s| allowed.contains(s)) {
                Some(_) => Ok(()),
                None => Err(format!("must be one of {}", allowed.join(", "))),
            }
        }
    }
}

/// An unknown key as echoed in an error: at most 64 bytes, cut on a character boundary, then `…`.
fn echoed(key: &str) -> String {
    if key.len() <= 64 {
        return key.to_owned();
    }
    let end = (0..=64)
        .rev()
        .find(|&i| key.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &key[..end])
}

/// The `invalid_request` error a body must get, or `Ok` when it is a valid action.
pub fn validate(body: &Value) -> Result<(), String> {
    let Value::Object(map) = body else {
        return Err("request body must be a JSON object".into());
    };
    let action = match map.get("action") {
        None => return Err("action: required".into()),
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err("action: must be a string".into()),
    };
    let Some(fields) = schema(action) else {
        return Err(if action.trim().is_empty() {
            "action: must be a non-empty string".into()
        } else {
            format!("action: must be one of {}", ACTIONS.join(", "))
        });
    };
    if let Some(key) = map
        .keys()
        .find(|k| *k != "action" && !fields.iter().any(|(name, _)| name == k))
    {
        return Err(format!("{}: unknown field", echoed(key)));
    }
    for (name, kind) in fields {
        check_field(name, *kind, map.get(*name)).map_err(|message| format!("{name}: {message}"))?;
    }
    if action == "run_task"
        && ["startedAt", "lastEventAt", "progressSummary"]
            .iter()
            .any(|k| map.contains_key(*k))
        && map.get("status").and_then(Value::as_str) != Some("running")
    {
        return Err(
            "status: status must be running when startedAt, lastEventAt, or progressSummary is \
             provided"
                .into(),
        );
    }
    Ok(())
}

/// Every flow and task of both sessions, by flow id, as their JSON records.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    flows: BTreeMap<String, (Value, Vec<Value>)>,
}

impl Snapshot {
    fn flow(&self, id: &str) -> Option<&Value> {
        self.flows.get(id).map(|(flow, _)| flow)
    }

    /// The flow `id` if the route's session owns it: anything else is "not found".
    fn owned(&self, id: &str) -> Option<&Value> {
        self.flow(id).filter(|f| f["ownerKey"] == OWNER)
    }

    fn revision(&self, id: &str) -> u64 {
        self.flow(id)
            .and_then(|f| f["revision"].as_u64())
            .unwrap_or(0)
    }

    /// Differences from `other`, ignoring the flows in `except`.
    fn same_except(&self, other: &Snapshot, except: &[&str]) -> Outcome {
        let keys = |s: &Snapshot| -> Vec<String> {
            s.flows
                .keys()
                .filter(|k| !except.contains(&k.as_str()))
                .cloned()
                .collect()
        };
        ensure!(
            keys(self) == keys(other),
            "flows appeared or vanished: {:?} then {:?}",
            keys(self),
            keys(other)
        );
        for key in keys(self) {
            ensure!(
                self.flows[&key] == other.flows[&key],
                "flow {key} changed: {:?} became {:?}",
                self.flows[&key],
                other.flows[&key]
            );
        }
        Ok(())
    }
}

/// The seeded flows' ids.
#[derive(Clone, Debug)]
struct Seeds {
    /// `queued`, with one `queued` child task whose `runId` is [`SEED_RUN`].
    with_task: String,
    running: String,
    succeeded: String,
    cancel_requested: String,
    unmanaged: String,
    /// Owned by [`OTHER_OWNER`].
    foreign: String,
}

/// A fresh store with the seeded flows, and the route's service over it.
pub struct Harness {
    store: MemoryStore,
    service: ScrubOwnerMetadata<TaskFlowActionService<MemoryStore>>,
    seeds: Seeds,
}

impl Harness {
    /// Seeds a new store. The clock is manual, so a run is reproducible.
    pub fn new() -> Result<Self, String> {
        let store = MemoryStore::build(
            MemoryStoreConfig::new(),
            ManualClock::new(1_700_000_000_000),
            Arc::new(CancelImmediately),
        );
        let create = |owner: &str, edit: &dyn Fn(&mut NewFlow)| -> Result<String, String> {
            let mut new = NewFlow::new("seed", "seeded flow");
            edit(&mut new);
            let flow = ready(store.create_flow(owner, new))?.map_err(|e| e.to_string())?;
            Ok(flow.id_string())
        };
        let with_task = create(OWNER, &|_| {})?;
        let mut task = NewTask::new(Runtime::Subagent, SEED_TASK);
        task.run_id = Some(SEED_RUN.into());
        ready(store.run_task(OWNER, &with_task, task))?.map_err(|e| e.to_string())?;
        let running = create(OWNER, &|n| n.status = FlowStatus::Running)?;
        let succeeded = create(OWNER, &|_| {})?;
        let finish = Mutation::Finish { state_json: None };
        ready(store.mutate_flow(OWNER, &succeeded, 0, finish))?.map_err(|e| e.to_string())?;
        let cancel_requested = create(OWNER, &|_| {})?;
        let cancel = Mutation::RequestCancel;
        ready(store.mutate_flow(OWNER, &cancel_requested, 0, cancel))?
            .map_err(|e| e.to_string())?;
        let unmanaged = create(OWNER, &|n| n.sync_mode = SyncMode::TaskMirrored)?;
        let foreign = create(OTHER_OWNER, &|_| {})?;
        let service = ScrubOwnerMetadata::new(
            TaskFlowActionService::new(store.clone(), TaskFlowRoute::new(ROUTE_ID, OWNER)),
            ScrubConfig::new(),
        );
        Ok(Self {
            store,
            service,
            seeds: Seeds {
                with_task,
                running,
                succeeded,
                cancel_requested,
                unmanaged,
                foreign,
            },
        })
    }

    /// Every flow and task, both sessions.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        let mut flows = BTreeMap::new();
        for owner in [OWNER, OTHER_OWNER] {
            for flow in ready(self.store.list_flows(owner))?.map_err(|e| e.to_string())? {
                let id = flow.id_string();
                let tasks = ready(self.store.list_tasks(owner, &id))?
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                let tasks = tasks.iter().map(Task::to_stored_json).collect();
                flows.insert(id, (flow.to_stored_json(), tasks));
            }
        }
        Ok(Snapshot { flows })
    }

    fn flow_ids(&self) -> [&str; 6] {
        let s = &self.seeds;
        [
            &s.with_task,
            &s.running,
            &s.succeeded,
            &s.cancel_requested,
            &s.unmanaged,
            &s.foreign,
        ]
    }

    /// Sends `body` and returns the status, the `Content-Type` and the body bytes.
    fn send(&self, body: Vec<u8>) -> Result<(u16, String, Bytes), String> {
        let request = Request::post("/plugins/webhooks/r")
            .header("content-type", "application/json")
            .body(BufferedBody::new(body))
            .map_err(|e| e.to_string())?;
        let response = ready(self.service.clone().oneshot(request))?.unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = ready(response.into_body().collect())?
            .unwrap_or_else(|e| match e {})
            .to_bytes();
        Ok((status, content_type, bytes))
    }

    // ------------------------------------------------------------------ generation

    /// A body from the input: raw bytes (one time in eight), a generated request with bytes
    /// spliced into its text (one in eight), or a generated request.
    pub fn body(&self, input: &mut Input<'_>, before: &Snapshot) -> Vec<u8> {
        match input.below(8) {
            0 => input.rest().to_vec(),
            1 => {
                let mut text = self.request(input, before).to_string().into_bytes();
                let at = input.below(text.len() + 1);
                let cut = input.below(4).min(text.len() - at);
                let splice = input.bytes(6).to_vec();
                text.splice(at..at + cut, splice);
                text
            }
            _ => self.request(input, before).to_string().into_bytes(),
        }
    }

    /// A near-valid request: an action with each field kept, dropped or broken. A zero byte is
    /// always the plainest choice (a real action, every field present and good, nothing extra), so
    /// a short or shrunk input means a simple, valid request.
    pub fn request(&self, input: &mut Input<'_>, before: &Snapshot) -> Value {
        if input.below(24) == 23 {
            return input
                .pick(&[
                    json!([]),
                    json!(null),
                    json!("create_flow"),
                    json!(7),
                    json!([{}]),
                ])
                .clone();
        }
        let action = match input.below(20) {
            19 => *input.pick(&["", "  ", "nope", "Create_Flow", "get_flow ", "list_flows\0"]),
            _ => *input.pick(&ACTIONS),
        };
        let mut members: Vec<(String, Value)> = Vec::new();
        match input.below(24) {
            23 => {}
            22 => members.push(("action".into(), bad_value(input))),
            _ => members.push(("action".into(), action.into())),
        }
        let fields = schema(action).unwrap_or(&[]);
        // run_task: most requests follow the running-only rule, some repeat the seeded task.
        let running = action == "run_task" && input.chance(3);
        let repeat = action == "run_task" && !running && input.chance(2);
        let mut flow_id: Option<String> = None;
        for (name, kind) in fields {
            let required = matches!(kind, Str | Int | ReqChoice(_));
            let running_only = matches!(*name, "startedAt" | "lastEventAt" | "progressSummary");
            let roll = input.below(16);
            let value = if repeat {
                match *name {
                    "flowId" => Some(self.seeds.with_task.clone().into()),
                    "runtime" => Some("subagent".into()),
                    "task" => Some(SEED_TASK.into()),
                    "runId" => Some(SEED_RUN.into()),
                    "childSessionKey" | "label" | "status" => None,
                    _ if running_only => None,
                    _ if roll < 4 => Some(self.good_value(input, name, *kind, None, before)),
                    _ => None,
                }
            } else if running && *name == "status" {
                Some("running".into())
            } else if roll == 15 {
                Some(bad_value(input))
            } else if running_only && !running && roll != 14 {
                None
            } else if roll < if required { 15 } else { 6 } {
                Some(self.good_value(input, name, *kind, flow_id.as_deref(), before))
            } else {
                None
            };
            if let Some(value) = value {
                if *name == "flowId" {
                    flow_id = value.as_str().map(str::to_owned);
                }
                members.push(((*name).into(), value));
            }
        }
        if input.below(6) == 5 {
            let key = input.pick(&[
                "ownerKey",
                "requesterSessionKey",
                "x",
                "",
                "Goal",
                "flowid",
                "expected_revision",
                "action ",
                "ключ",
            ]);
            let key = match input.below(8) {
                7 => "k".repeat(70),
                6 => "é".repeat(40),
                _ => (*key).to_owned(),
            };
            let at = input.below(members.len() + 1);
            members.insert(at, (key, bad_value(input)));
        }
        if input.below(6) == 5 && members.len() > 1 {
            let from = input.below(members.len());
            let member = members.remove(from);
            let to = input.below(members.len() + 1);
            members.insert(to, member);
        }
        Value::Object(members.into_iter().collect::<Map<_, _>>())
    }

    fn good_value(
        &self,
        input: &mut Input<'_>,
        name: &str,
        kind: Kind,
        flow_id: Option<&str>,
        before: &Snapshot,
    ) -> Value {
        match (name, kind) {
            ("flowId", _) | ("token", _) => {
                let ids = self.flow_ids();
                match input.below(12) {
                    11 => "00000000-0000-4000-8000-000000000000".into(),
                    10 => ids[0].to_uppercase().into(),
                    9 => format!(" {}", ids[0]).into(),
                    8 if name == "token" => OWNER.into(),
                    7 if name == "token" => OTHER_OWNER.into(),
                    _ => (*input.pick(&ids)).into(),
                }
            }
            ("expectedRevision", _) => {
                let current = flow_id.map_or(0, |id| before.revision(id));
                match input.below(8) {
                    7 => current.wrapping_add(1).into(),
                    6 => current.wrapping_sub(1).into(),
                    5 => u64::MAX.into(),
                    _ => current.into(),
                }
            }
            ("task", _) if input.chance(5) => SEED_TASK.into(),
            ("runId", _) if input.chance(5) => SEED_RUN.into(),
            ("childSessionKey", _) => (*input.pick(&[
                "agent:main:child",
                "agent:main:hooks:sub",
                "agent:ops:child",
                "agent:main",
                "agent:mainx:y",
            ]))
            .into(),
            ("startedAt" | "lastEventAt", _) => input
                .pick(&[
                    json!(0),
                    json!(1_700_000_000_000u64),
                    json!(u64::MAX),
                    json!(null),
                ])
                .clone(),
            ("status", _) if input.chance(2) => "running".into(),
            (_, Choice(allowed) | ReqChoice(allowed)) => (*input.pick(allowed)).into(),
            (_, OptBool) => input
                .pick(&[json!(true), json!(false), json!(null)])
                .clone(),
            (_, OptInt | Int) => input.pick(&[json!(0), json!(42)]).clone(),
            (_, Json) => json_value(input, 3),
            (_, OptStr) if input.below(8) == 7 => Value::Null,
            (_, Str | OptStr) => good_string(input),
        }
    }

    // ------------------------------------------------------------------ the check

    /// Generates a body from `data` (see [`Harness::body`]), sends it, and checks the answer and the
    /// store against the oracle.
    pub fn check_input(&self, data: &[u8]) -> Outcome {
        let before = self.snapshot()?;
        let mut input = Input::new(data);
        let body = self.body(&mut input, &before);
        self.check_body(body, &before)
    }

    /// Sends `body` and checks the answer and the store against the oracle.
    pub fn check_body(&self, body: Vec<u8>, before: &Snapshot) -> Outcome {
        let decoded = decode(&body);
        let (status, content_type, bytes) = self.send(body.clone())?;
        let after = self.snapshot()?;
        let shown = String::from_utf8_lossy(&body);
        let shown: String = shown.chars().take(400).collect();

        let Some(request) = decoded else {
            ensure!(
                (status, content_type.as_str(), &bytes[..])
                    == (
                        400,
                        "text/plain; charset=utf-8",
                        &b"invalid request body"[..]
                    ),
                "undecodable body {shown:?}: {status} {content_type} {bytes:?}"
            );
            return before.same_except(&after, &[]);
        };
        ensure!(
            content_type == "application/json; charset=utf-8",
            "JSON answer with Content-Type {content_type:?} for {shown:?}"
        );
        let envelope: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("answer is not JSON ({e}) for {shown:?}"))?;
        leaks_no_session(&request, &bytes, &shown)?;

        if let Err(error) = validate(&request) {
            let want = json!({"ok": false, "code": "invalid_request", "error": error});
            ensure!(
                status == 400 && envelope == want,
                "{shown:?}: expected 400 {want}, got {status} {envelope}"
            );
            return before.same_except(&after, &[]);
        }

        let expect = predict(&request, before, &self.seeds);
        ensure!(
            status == expect.status(),
            "{shown:?}: expected {expect:?}, got {status} {envelope}"
        );
        ensure!(
            envelope["ok"] == (status < 400) && envelope["routeId"] == ROUTE_ID,
            "{shown:?}: envelope {envelope}"
        );
        if let Expect::Refused(_, code) = expect {
            ensure!(
                envelope["code"] == code,
                "{shown:?}: expected code {code}, got {envelope}"
            );
        }
        expect
            .check_store(&request, before, &after)
            .map_err(|e| format!("{shown:?} ({expect:?}): {e}"))
    }
}

/// SPEC §2 step 8: UTF-8, trimmed (whitespace and the byte-order mark), then JSON.
pub fn decode(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// SPEC §4: the route's session key, or another session's, never appears in an answer unless the
/// request itself carried it.
fn leaks_no_session(request: &Value, answer: &[u8], shown: &str) -> Outcome {
    let answer = String::from_utf8_lossy(answer);
    let request_text = request.to_string();
    for session in [OWNER, OTHER_OWNER] {
        ensure!(
            !answer.contains(session) || request_text.contains(session),
            "the answer to {shown:?} carries the session key {session}: {answer}"
        );
    }
    Ok(())
}

fn good_string(input: &mut Input<'_>) -> Value {
    match input.below(16) {
        15 => "a".repeat(MAX_STRING).into(),
        14 => "é".repeat(MAX_STRING / 2).into(),
        _ => (*input.pick(&[
            "g",
            " padded ",
            "é",
            "\u{3000}x",
            "line\nbreak",
            "\u{feff}",
            "0",
            "null",
            OWNER,
        ]))
        .into(),
    }
}

/// A value of a wrong type or out of range for most fields.
fn bad_value(input: &mut Input<'_>) -> Value {
    match input.below(24) {
        23 => "x".repeat(MAX_STRING + 1).into(),
        22 => "é".repeat(MAX_STRING / 2 + 1).into(),
        21 => json_value(input, 3),
        _ => input
            .pick(&[
                json!(null),
                json!(true),
                json!(0),
                json!(-1),
                json!(1.5),
                json!(1.0),
                json!(-0.0),
                json!(1e300),
                json!(18_446_744_073_709_551_616.0),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(""),
                json!(" "),
                json!("\t\n"),
                json!("\u{3000}"),
                json!([]),
                json!({}),
                json!(["a"]),
                json!({"a": 1}),
                json!("QUEUED"),
                json!("queued "),
            ])
            .clone(),
    }
}

/// Caller JSON: any shape, with owner-looking keys, nested up to `depth`.
fn json_value(input: &mut Input<'_>, depth: usize) -> Value {
    match input.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(input.chance(4)),
        2 => json!(input.byte() as i64 - 128),
        3 => json!(f64::from(input.byte()) / 7.0),
        4 => (*input.pick(&["", "ownerKey", OWNER, "x"])).into(),
        5 => Value::Array(
            (0..input.below(4))
                .map(|_| json_value(input, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..input.below(4))
                .map(|_| {
                    let key = *input.pick(&["ownerKey", "requesterSessionKey", "a", ""]);
                    (key.to_owned(), json_value(input, depth - 1))
                })
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------- the semantic oracle

/// What a valid request must do.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// `200`, nothing changes.
    Read,
    /// `200`, one new flow.
    Created,
    /// `200`, this flow's revision `+1`, nothing else changes.
    Mutated(String),
    /// `200`, this flow is cancelled (revision `+1` per step), its active tasks cancelled.
    Cancelled(String),
    /// `200`, a task in this flow: new (`true`) or the idempotent repeat (`false`).
    Task(String, bool),
    /// A refusal with this status and code; nothing changes.
    Refused(u16, &'static str),
}

impl Expect {
    fn status(&self) -> u16 {
        match self {
            Self::Refused(status, _) => *status,
            _ => 200,
        }
    }

    fn check_store(&self, request: &Value, before: &Snapshot, after: &Snapshot) -> Outcome {
        match self {
            Self::Read | Self::Refused(..) => before.same_except(after, &[]),
            Self::Created => {
                let new: Vec<&String> = after
                    .flows
                    .keys()
                    .filter(|k| !before.flows.contains_key(*k))
                    .collect();
                ensure!(new.len() == 1, "expected one new flow, got {new:?}");
                let (flow, tasks) = &after.flows[new[0]];
                ensure!(
                    flow["revision"] == 0
                        && flow["ownerKey"] == OWNER
                        && flow["goal"] == request["goal"]
                        && flow["status"] == *request.get("status").unwrap_or(&json!("queued"))
                        && tasks.is_empty(),
                    "created flow {flow}"
                );
                before.same_except(after, &[new[0].as_str()])
            }
            Self::Mutated(id) => {
                let flow = after.flow(id).ok_or("mutated flow vanished")?;
                ensure!(
                    flow["revision"].as_u64() == Some(before.revision(id) + 1),
                    "revision {} became {}",
                    before.revision(id),
                    flow["revision"]
                );
                let status = match request["action"].as_str().unwrap_or("") {
                    "set_waiting" => {
                        let given = |k: &str| request.get(k).is_some_and(Value::is_string);
                        if given("blockedTaskId") || given("blockedSummary") {
                            json!("blocked")
                        } else {
                            json!("waiting")
                        }
                    }
                    "resume_flow" => request.get("status").cloned().unwrap_or(json!("queued")),
                    "finish_flow" => json!("succeeded"),
                    "fail_flow" => json!("failed"),
                    _ => before.flow(id).map_or(Value::Null, |f| f["status"].clone()),
                };
                ensure!(
                    flow["status"] == status,
                    "status {} for {status}",
                    flow["status"]
                );
                if request["action"] == "request_cancel" {
                    ensure!(flow["cancelRequestedAt"].is_u64(), "no cancelRequestedAt");
                }
                ensure!(
                    after.flows[id.as_str()].1 == before.flows[id.as_str()].1,
                    "a mutation changed the flow's tasks"
                );
                before.same_except(after, &[id.as_str()])
            }
            Self::Cancelled(id) => {
                let old = before.flow(id).ok_or("no such flow")?;
                let flow = after.flow(id).ok_or("cancelled flow vanished")?;
                let steps = if old["cancelRequestedAt"].is_u64() {
                    1
                } else {
                    2
                };
                ensure!(
                    flow["status"] == "cancelled"
                        && flow["revision"].as_u64() == Some(before.revision(id) + steps),
                    "cancelled flow {flow} (was {old})"
                );
                let tasks = &after.flows[id.as_str()].1;
                ensure!(
                    tasks
                        .iter()
                        .all(|t| !matches!(t["status"].as_str(), Some("queued" | "running"))),
                    "a child task is still active: {tasks:?}"
                );
                before.same_except(after, &[id.as_str()])
            }
            Self::Task(id, new) => {
                let (old_flow, old_tasks) = &before.flows[id.as_str()];
                let (flow, tasks) = &after.flows[id.as_str()];
                ensure!(
                    flow["revision"] == old_flow["revision"],
                    "run_task changed the flow's revision"
                );
                ensure!(
                    tasks.len() == old_tasks.len() + usize::from(*new)
                        && tasks[..old_tasks.len()] == old_tasks[..],
                    "tasks {old_tasks:?} became {tasks:?} (new: {new})"
                );
                before.same_except(after, &[id.as_str()])
            }
        }
    }
}

/// The outcome of a valid request against the seeded store (SPEC §3 and the crate's documented
/// choices: the child-session policy before the store, then exists, managed, cancel, terminal).
fn predict(request: &Value, before: &Snapshot, seeds: &Seeds) -> Expect {
    let action = request["action"].as_str().unwrap_or("");
    let id = js_trim(request["flowId"].as_str().unwrap_or(""));
    let owned = before.owned(id);
    let managed = owned.is_some_and(|f| f["syncMode"] == "managed");
    let terminal = owned.is_some_and(|f| {
        matches!(
            f["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "lost")
        )
    });
    let cancel_requested = owned.is_some_and(|f| f["cancelRequestedAt"].is_u64());
    match action {
        "create_flow" => Expect::Created,
        "set_waiting" | "resume_flow" | "finish_flow" | "fail_flow" | "request_cancel" => {
            if owned.is_none() {
                Expect::Refused(404, "not_found")
            } else if !managed {
                Expect::Refused(409, "not_managed")
            } else if integer(&request["expectedRevision"]).ok() != Some(before.revision(id)) {
                Expect::Refused(409, "revision_conflict")
            } else {
                Expect::Mutated(id.to_owned())
            }
        }
        "cancel_flow" => {
            if owned.is_none() {
                Expect::Refused(404, "not_found")
            } else if terminal {
                Expect::Refused(409, "terminal")
            } else {
                Expect::Cancelled(id.to_owned())
            }
        }
        "run_task" => {
            let child = request.get("childSessionKey").and_then(Value::as_str);
            if child.is_some_and(|c| !c.starts_with("agent:main:")) {
                Expect::Refused(403, "child_session_forbidden")
            } else if owned.is_none() {
                Expect::Refused(404, "not_found")
            } else if !managed {
                Expect::Refused(409, "not_managed")
            } else if cancel_requested {
                Expect::Refused(409, "cancel_requested")
            } else if terminal {
                Expect::Refused(409, "terminal")
            } else {
                let text = |k: &str| request.get(k).and_then(Value::as_str);
                let repeat = id == seeds.with_task
                    && text("runId") == Some(SEED_RUN)
                    && text("runtime") == Some("subagent")
                    && text("task") == Some(SEED_TASK)
                    && child.is_none()
                    && text("label").is_none();
                Expect::Task(id.to_owned(), !repeat)
            }
        }
        _ => Expect::Read,
    }
}

/// One check from raw bytes: a fresh seeded store, a body from `data`, the oracle.
pub fn check(data: &[u8]) -> Outcome {
    Harness::new()?.check_input(data)
}

/// One check of `body` as it is, against a fresh seeded store.
pub fn check_body(body: &[u8]) -> Outcome {
    let harness = Harness::new()?;
    let before = harness.snapshot()?;
    harness.check_body(body.to_vec(), &before)
}

/// The text of the answer to `body`, against a fresh seeded store.
pub fn answer_text(body: &[u8]) -> Result<String, String> {
    let (_, _, bytes) = Harness::new()?.send(body.to_vec())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
