//! Races and loss: many tasks on a multi-threaded runtime hammer mixed TaskFlow actions on shared
//! flows, from several routes and two owners over one store, with `expectedRevision` taken from
//! fresh reads, from stale caches and made up, so revision conflicts really happen. Every response
//! is recorded; afterwards the invariants below must hold for whatever interleaving ran.
//!
//! What bumps a flow's `revision` (SPEC §3 and `MemoryStore`):
//!
//! - `create_flow` creates it at `0`;
//! - each mutation (`set_waiting`, `resume_flow`, `finish_flow`, `fail_flow`, `request_cancel`)
//!   answered `200`: `+1`, and the answer shows `expectedRevision + 1`;
//! - `cancel_flow` answered `200`: `+1` for the status change to `cancelled`, plus `+1` if it is
//!   the flow's first cancellation request (no earlier `request_cancel` or `cancel_flow` set
//!   `cancelRequestedAt`; it is sticky);
//! - `cancel_flow` answered `202` `cancel_pending`: `+1` only if it is the first cancellation
//!   request, otherwise nothing;
//! - nothing else: `run_task` (even a new task), reads, and every `4xx` change no revision.
//!
//! The invariants:
//!
//! 1. every answer is one the contract allows for that action (no 5xx, no 400, no 507);
//! 2. per flow, the revisions produced by the acknowledged writes are exactly `1..=revision`, each
//!    once: the final revision equals the count above, and two writers holding one revision never
//!    both won;
//! 3. every flow state observed at one revision, in any answer (reads, lists, `409` `current`,
//!    `run_task`, `cancel_flow`), is identical, and equal to the final state at the final revision:
//!    a `409` `revision_conflict` (or any refused request) changed nothing, and no intermediate state
//!    was ever visible;
//! 4. every flow a `200` `create_flow` returned is found by `get_flow` through its owner's routes,
//!    the owner's `list_flows` holds exactly the acknowledged creates, and nothing else was stored;
//! 5. owners are isolated: another owner's flow (or a never-created id) answers exactly like a
//!    missing one (`404` `not_found`, `{"flow":null}`, `{"summary":null}`), no answer of one owner
//!    names the other owner's session key, and every task belongs to a flow of its own owner;
//! 6. tasks: each acknowledged `run_task` task is stored once under its flow; a repeat with the same
//!    `runId` returned the same task; a flow whose cancellation completed has only cancelled tasks.
//!
//! Runs three seeded rounds through `TaskFlowActionService` in process and one through the whole
//! `WebhookPipeline` served with the crate's `serve` over real sockets. Either way, answers are
//! owner-free: no session key may appear at all.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::{
    TaskFlowActionService, WebhookPipeline,
    body::BufferedBody,
    clock::SystemClock,
    config::{Limits, ResolvedRoute},
    in_flight::InFlightConfig,
    rate_limit::RateLimitConfig,
    secret::Secret,
    taskflow::{
        CancelHook, ChildCancel, Flow, MemoryStore, MemoryStoreConfig, Task, TaskFlowRoute,
        TaskFlowStore, TaskStatus,
    },
};

/// The two owners sharing the store.
const OWNERS: [&str; 2] = ["agent:alpha:main", "agent:beta:main"];

/// Three routes, two of them for the same owner.
struct RouteSpec {
    id: &'static str,
    owner: usize,
    secret: &'static str,
}

const ROUTES: [RouteSpec; 3] = [
    RouteSpec {
        id: "alpha",
        owner: 0,
        secret: "races-secret-alpha-0001",
    },
    RouteSpec {
        id: "beta",
        owner: 1,
        secret: "races-secret-beta-0002",
    },
    RouteSpec {
        id: "alpha-ci",
        owner: 0,
        secret: "races-secret-alpha-ci-0003",
    },
];

const MUTATIONS: [&str; 5] = [
    "set_waiting",
    "resume_flow",
    "finish_flow",
    "fail_flow",
    "request_cancel",
];

/// Tasks labelled `hold` do not stop when cancelled: `cancel_flow` on their flow answers `202`.
#[derive(Debug)]
struct HoldLabelled;

impl CancelHook for HoldLabelled {
    fn cancel_task<'a>(&'a self, task: &'a Task) -> tower_webhooks::taskflow::CancelFuture<'a> {
        Box::pin(std::future::ready(
            if task.label.as_deref() == Some("hold") {
                ChildCancel::StillActive
            } else {
                ChildCancel::Cancelled
            },
        ))
    }
}

fn store() -> MemoryStore {
    MemoryStore::build(
        MemoryStoreConfig::default(),
        SystemClock::shared(),
        Arc::new(HoldLabelled),
    )
}

/// splitmix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One request and its answer.
#[derive(Debug)]
struct Rec {
    route: usize,
    request: Value,
    status: u16,
    body: Value,
    /// Everything the client received (headers and body for HTTP, the serialised envelope in
    /// process), for substring checks.
    raw: String,
}

impl Rec {
    fn action(&self) -> &str {
        self.request["action"].as_str().unwrap()
    }

    fn flow_id(&self) -> Option<&str> {
        self.request["flowId"].as_str()
    }

    fn code(&self) -> Option<&str> {
        self.body["code"].as_str()
    }
}

/// How a worker reaches the routes.
enum Client {
    /// Straight into one `TaskFlowActionService` per route (no scrubbing).
    Local(Arc<Vec<TaskFlowActionService<MemoryStore>>>),
    /// Over one keep-alive HTTP/1.1 connection to the served pipeline.
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

impl Client {
    async fn http(addr: std::net::SocketAddr) -> Self {
        let stream = support::connect(addr).await;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self::Http(sender)
    }

    async fn send(&mut self, route: usize, request: Value) -> Rec {
        let text = request.to_string();
        let (status, body, raw) = match self {
            Self::Local(services) => {
                let http_request = Request::post("/hook")
                    .header("content-type", "application/json")
                    .body(BufferedBody::from(text))
                    .unwrap();
                let response = services[route].clone().oneshot(http_request).await.unwrap();
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .json_value()
                    .unwrap_or_else(|| panic!("{status} without a JSON envelope for {request}"));
                let raw = body.to_string();
                (status, body, raw)
            }
            Self::Http(sender) => {
                let spec = &ROUTES[route];
                let http_request = Request::post(format!("/plugins/webhooks/{}", spec.id))
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {}", spec.secret))
                    .body(Full::new(Bytes::from(text)))
                    .unwrap();
                sender.ready().await.unwrap();
                let response = sender.send_request(http_request).await.unwrap();
                let status = response.status().as_u16();
                let mut raw = String::new();
                for (name, value) in response.headers() {
                    raw.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
                }
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                raw.push_str(&text);
                let body = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{status} {text:?} for {request}: {e}"));
                (status, body, raw)
            }
        };
        Rec {
            route,
            request,
            status,
            body,
            raw,
        }
    }
}

/// Flows acknowledged so far, shared by the workers: (flow id, owner).
#[derive(Default)]
struct Registry {
    flows: Mutex<Vec<(String, usize)>>,
}

impl Registry {
    fn add(&self, id: &str, owner: usize) {
        self.flows.lock().unwrap().push((id.to_owned(), owner));
    }

    /// A flow of `owner` most of the time, any flow sometimes, an id nobody created rarely.
    fn target(&self, rng: &mut Rng, owner: usize) -> String {
        let flows = self.flows.lock().unwrap();
        let roll = rng.below(100);
        if roll < 8 || flows.is_empty() {
            return uuid::Uuid::from_u64_pair(rng.next(), rng.next())
                .hyphenated()
                .to_string();
        }
        if roll < 30 {
            return rng.pick(&flows).0.clone();
        }
        let own: Vec<&String> = flows
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(id, _)| id)
            .collect();
        if own.is_empty() {
            rng.pick(&flows).0.clone()
        } else {
            (*rng.pick(&own)).clone()
        }
    }
}

fn create_request(rng: &mut Rng, marker: &str) -> Value {
    let status = rng.pick(&["queued", "running", "waiting", "blocked"]);
    json!({
        "action": "create_flow",
        "goal": format!("goal {marker}"),
        "status": status,
        "currentStep": format!("created {marker}"),
        "stateJson": {"created": marker},
    })
}

/// The revision this flow was last seen at in `rec`, if it shows the flow.
fn seen_revision(rec: &Rec, id: &str) -> Option<u64> {
    flows_in(&rec.body)
        .into_iter()
        .find(|f| f["flowId"] == id)
        .and_then(|f| f["revision"].as_u64())
}

/// Every flow object an answer carries: `result.flow`, `result.current`, `result.flows[]`.
fn flows_in(body: &Value) -> Vec<&Value> {
    let result = &body["result"];
    ["flow", "current"]
        .iter()
        .map(|k| &result[*k])
        .chain(result["flows"].as_array().into_iter().flatten())
        .filter(|f| f.is_object())
        .collect()
}

/// Every task object an answer carries: `result.task`, `result.tasks[]`.
fn tasks_in(body: &Value) -> Vec<&Value> {
    let result = &body["result"];
    std::iter::once(&result["task"])
        .chain(result["tasks"].as_array().into_iter().flatten())
        .filter(|t| t.is_object())
        .collect()
}

async fn worker(
    mut client: Client,
    registry: Arc<Registry>,
    seed: u64,
    steps: usize,
    me: usize,
) -> Vec<Rec> {
    let mut rng = Rng(seed);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut recs: Vec<Rec> = Vec::with_capacity(steps * 2);
    for step in 0..steps {
        let route = rng.below(ROUTES.len() as u64) as usize;
        let owner = ROUTES[route].owner;
        let marker = format!("w{me}s{step}");
        let roll = rng.below(100);
        if roll < 7 {
            let rec = client.send(route, create_request(&mut rng, &marker)).await;
            if rec.status == 200 {
                let id = rec.body["result"]["flow"]["flowId"].as_str().unwrap();
                registry.add(id, owner);
                seen.insert(id.to_owned(), 0);
            }
            recs.push(rec);
            continue;
        }
        let id = registry.target(&mut rng, owner);
        let request = match roll {
            7..=16 => json!({"action": "get_flow", "flowId": id}),
            17..=19 => json!({"action": "list_flows"}),
            20..=21 => json!({"action": "find_latest_flow"}),
            22..=23 => json!({"action": "resolve_flow", "token": id}),
            24..=28 => json!({"action": "get_task_summary", "flowId": id}),
            29..=45 => {
                // run_task: a small set of run ids per flow, so repeats (idempotent) happen; the
                // task's fields follow from the run id, so a repeat is a true repeat.
                let agent = if owner == 0 { "alpha" } else { "beta" };
                let run = rng.below(6);
                let mut body = json!({
                    "action": "run_task",
                    "flowId": id,
                    "runtime": if run % 2 == 0 { "subagent" } else { "acp" },
                    "task": format!("task for run {run}"),
                    "runId": format!("run-{run}"),
                    "label": if run >= 4 { "hold" } else { "plain" },
                    "childSessionKey": format!("agent:{agent}:child:{run}"),
                });
                match rng.below(10) {
                    // Outside the same-agent scope: 403, nothing created.
                    0 => {
                        let other = if owner == 0 { "beta" } else { "alpha" };
                        body["childSessionKey"] = json!(format!("agent:{other}:child:{run}"));
                    }
                    // No run id: always a new task.
                    1 | 2 => {
                        body.as_object_mut().unwrap().remove("runId");
                    }
                    _ => {}
                }
                body
            }
            46..=49 => json!({"action": "cancel_flow", "flowId": id}),
            _ => {
                let action = *rng.pick(&[
                    "set_waiting",
                    "set_waiting",
                    "resume_flow",
                    "resume_flow",
                    "finish_flow",
                    "fail_flow",
                    "request_cancel",
                ]);
                let expected = match rng.below(100) {
                    0..=59 => {
                        let read = client
                            .send(route, json!({"action": "get_flow", "flowId": id}))
                            .await;
                        let revision = seen_revision(&read, &id).unwrap_or(0);
                        recs.push(read);
                        revision
                    }
                    60..=84 => seen.get(&id).copied().unwrap_or(0),
                    _ => rng.below(seen.get(&id).copied().unwrap_or(0) + 3),
                };
                let mut body = json!({
                    "action": action,
                    "flowId": id,
                    "expectedRevision": expected,
                });
                match action {
                    "set_waiting" => {
                        body["currentStep"] = json!(format!("waiting {marker}"));
                        body["waitJson"] = json!({"for": marker});
                        if rng.below(2) == 0 {
                            body["blockedSummary"] = json!(format!("blocked {marker}"));
                        }
                    }
                    "resume_flow" => {
                        body["status"] = json!(rng.pick(&["queued", "running"]));
                        body["stateJson"] = json!({"resumed": marker});
                    }
                    "finish_flow" => body["stateJson"] = json!({"finished": marker}),
                    "fail_flow" => body["blockedSummary"] = json!(format!("failed {marker}")),
                    _ => {}
                }
                body
            }
        };
        let rec = client.send(route, request).await;
        if let Some(revision) = seen_revision(&rec, &id) {
            seen.insert(id, revision);
        }
        recs.push(rec);
    }
    recs
}

/// The end state, read from the store directly (unscrubbed).
struct Final {
    flows: BTreeMap<String, (usize, Flow, Vec<Task>)>,
    flow_count: usize,
    task_count: usize,
}

async fn final_state(store: &MemoryStore) -> Final {
    let mut flows = BTreeMap::new();
    for (owner, key) in OWNERS.iter().enumerate() {
        for flow in store.list_flows(key).await.unwrap() {
            let tasks = store
                .list_tasks(key, &flow.id_string())
                .await
                .unwrap()
                .unwrap();
            let previous = flows.insert(flow.id_string(), (owner, Flow::clone(&flow), tasks));
            assert!(previous.is_none(), "a flow listed under two owners");
        }
    }
    Final {
        flows,
        flow_count: store.flow_count(),
        task_count: store.task_count(),
    }
}

/// A flow from an answer as the checks compare it: answers never carry `ownerKey`.
fn answered(flow: &Value) -> Value {
    assert_eq!(
        flow.get("ownerKey"),
        None,
        "ownerKey reached a client: {flow}"
    );
    flow.clone()
}

/// A flow from the store as the checks compare it: without its `ownerKey`, which must name `owner`.
fn stored(flow: &tower_webhooks::taskflow::Flow, owner: usize) -> Value {
    let mut flow = flow.to_stored_json();
    let key = flow.as_object_mut().unwrap().shift_remove("ownerKey");
    assert_eq!(key, Some(json!(OWNERS[owner])), "{flow}");
    flow
}

/// Checks the invariants of the module docs over every record and the final store.
fn check(recs: &[Rec], end: &Final) {
    // ---- 1. every answer is an allowed one; envelope basics ----
    let mut counts: BTreeMap<(String, u16, String), usize> = BTreeMap::new();
    for rec in recs {
        let allowed: &[(u16, Option<&str>)] = match rec.action() {
            "create_flow" | "get_flow" | "list_flows" | "find_latest_flow" | "resolve_flow"
            | "get_task_summary" => &[(200, None)],
            "run_task" => &[
                (200, None),
                (404, Some("not_found")),
                (409, Some("cancel_requested")),
                (409, Some("terminal")),
                (403, Some("child_session_forbidden")),
            ],
            "cancel_flow" => &[
                (200, None),
                (202, Some("cancel_pending")),
                (404, Some("not_found")),
                (409, Some("terminal")),
            ],
            _ => &[
                (200, None),
                (404, Some("not_found")),
                (409, Some("revision_conflict")),
            ],
        };
        assert!(
            allowed.contains(&(rec.status, rec.code())),
            "unexpected answer {} {}: {} -> {}",
            rec.status,
            rec.action(),
            rec.request,
            rec.body
        );
        assert_eq!(rec.body["ok"], rec.status < 400, "{}", rec.body);
        assert_eq!(rec.body["routeId"], ROUTES[rec.route].id, "{}", rec.body);
        *counts
            .entry((
                rec.action().to_owned(),
                rec.status,
                rec.code().unwrap_or("").to_owned(),
            ))
            .or_default() += 1;
    }

    // ---- 4 (first half). acknowledged creates ----
    let mut owner_of: BTreeMap<String, usize> = BTreeMap::new();
    for rec in recs.iter().filter(|r| r.action() == "create_flow") {
        let flow = &rec.body["result"]["flow"];
        assert_eq!(rec.body["result"]["created"], true);
        assert_eq!(flow["revision"], 0);
        let id = flow["flowId"].as_str().unwrap().to_owned();
        let previous = owner_of.insert(id, ROUTES[rec.route].owner);
        assert!(previous.is_none(), "one flow id created twice");
    }
    for (id, owner) in &owner_of {
        let (stored_owner, flow, _) = end
            .flows
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged flow {id} is missing"));
        assert_eq!(stored_owner, owner, "flow {id} changed owner");
        assert_eq!(&*flow.owner_key, OWNERS[*owner]);
    }
    assert_eq!(
        end.flows.len(),
        owner_of.len(),
        "flows stored without an acknowledged create"
    );
    assert_eq!(end.flow_count, owner_of.len());

    // ---- 5. isolation, request by request ----
    for rec in recs {
        let me = ROUTES[rec.route].owner;
        let other = OWNERS[1 - me];
        assert!(
            !rec.raw.contains(other),
            "another owner's session key in {}",
            rec.raw
        );
        assert!(
            !rec.raw.contains(OWNERS[me]),
            "the route's own session key in {}",
            rec.raw
        );
        for flow in flows_in(&rec.body) {
            let id = flow["flowId"].as_str().unwrap();
            assert_eq!(owner_of.get(id), Some(&me), "{id} shown to another owner");
        }
        for task in tasks_in(&rec.body) {
            let parent = task["parentFlowId"].as_str().unwrap();
            assert_eq!(owner_of.get(parent), Some(&me), "task of a foreign flow");
            assert_eq!(task.get("ownerKey"), None, "{task}");
            assert_eq!(task.get("requesterSessionKey"), None, "{task}");
        }
        let Some(target) = rec.flow_id().or(rec.request["token"].as_str()) else {
            continue;
        };
        let owned = owner_of.get(target) == Some(&me);
        let result = &rec.body["result"];
        match rec.action() {
            "get_flow" | "resolve_flow" => {
                assert_eq!(result["flow"].is_null(), !owned, "{}", rec.body);
            }
            "get_task_summary" => {
                assert_eq!(result["summary"].is_null(), !owned, "{}", rec.body);
                if owned {
                    let s = &result["summary"];
                    let total = s["total"].as_u64().unwrap();
                    assert_eq!(
                        s["active"].as_u64().unwrap() + s["terminal"].as_u64().unwrap(),
                        total
                    );
                    let by_status: u64 = s["byStatus"]
                        .as_object()
                        .unwrap()
                        .values()
                        .map(|v| v.as_u64().unwrap())
                        .sum();
                    assert_eq!(by_status, total);
                }
            }
            "run_task" if rec.code() == Some("child_session_forbidden") => {}
            action if !owned => {
                assert_eq!(
                    rec.status, 404,
                    "{action} on a flow not owned: {}",
                    rec.body
                );
                if MUTATIONS.contains(&action) {
                    assert_eq!(
                        rec.body,
                        json!({
                            "ok": false,
                            "routeId": ROUTES[rec.route].id,
                            "code": "not_found",
                            "error": "TaskFlow not found.",
                            "result": {"applied": false, "code": "not_found"},
                        })
                    );
                }
            }
            _ => assert_ne!(rec.status, 404, "owned flow not found: {}", rec.body),
        }
    }

    // ---- 2 and 3. revisions and states, flow by flow ----
    let mut writes: BTreeMap<&str, Vec<&Rec>> = BTreeMap::new();
    let mut states: BTreeMap<(String, u64), Value> = BTreeMap::new();
    for rec in recs {
        for flow in flows_in(&rec.body) {
            let id = flow["flowId"].as_str().unwrap().to_owned();
            let revision = flow["revision"].as_u64().unwrap();
            let flow = answered(flow);
            match states.get(&(id.clone(), revision)) {
                Some(known) => assert_eq!(
                    known, &flow,
                    "two different states of {id} at revision {revision}"
                ),
                None => {
                    states.insert((id, revision), flow);
                }
            }
        }
        let write = match rec.action() {
            "cancel_flow" => rec.status == 200 || rec.status == 202,
            action => MUTATIONS.contains(&action) && rec.status == 200,
        };
        if write {
            writes.entry(rec.flow_id().unwrap()).or_default().push(rec);
        }
        if rec.code() == Some("revision_conflict") {
            let current = rec.body["result"]["current"]["revision"].as_u64().unwrap();
            assert_ne!(Some(current), rec.request["expectedRevision"].as_u64());
            assert_eq!(rec.body["result"]["applied"], false);
        }
    }

    let mut bumps_total = 0;
    for (id, (owner, flow, tasks)) in &end.flows {
        let flow_writes = writes.remove(id.as_str()).unwrap_or_default();
        let revision_of = |rec: &Rec| rec.body["result"]["flow"]["revision"].as_u64().unwrap();

        // Revisions claimed by writes that always bump.
        let mut claimed: BTreeMap<u64, &Rec> = BTreeMap::new();
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
        for rec in &flow_writes {
            let revision = revision_of(rec);
            if rec.status == 202 {
                *pending.entry(revision).or_default() += 1;
                continue;
            }
            if rec.action() != "cancel_flow" {
                let expected = rec.request["expectedRevision"].as_u64().unwrap();
                assert_eq!(revision, expected + 1, "{}", rec.body);
                assert_eq!(rec.body["result"]["applied"], true);
            }
            if let Some(twin) = claimed.insert(revision, rec) {
                panic!(
                    "two writes of {id} both produced revision {revision}:\n{}\n{}",
                    twin.request, rec.request
                );
            }
        }
        // The first cancellation request is its own commit (the cancel hook runs after it, with
        // no lock held), and its answer reports the flow as it is once the hook has answered: a
        // write may have landed in between. So the request's revision is the one revision no
        // acknowledged write reports; there is at most one, and only where a `cancel_flow` ran,
        // whatever it answered: a write that ended the flow meanwhile (`finish_flow`, say) makes
        // it `409 terminal` although its request was committed.
        let pending_first: BTreeSet<u64> = (1..=flow.revision)
            .filter(|r| !claimed.contains_key(r))
            .collect();
        assert!(
            pending_first.len() <= 1,
            "{id}: revisions no write produced: {pending_first:?}"
        );
        assert!(
            pending_first.is_empty()
                || recs
                    .iter()
                    .any(|r| r.action() == "cancel_flow" && r.flow_id() == Some(id.as_str())),
            "{id}: a revision bump without an acknowledged write"
        );

        // Walk the writes in revision order (the store's linear order for this flow).
        enum Step<'a> {
            Write(&'a Rec),
            PendingFirst,
        }
        let mut ordered: BTreeMap<u64, Step> = claimed
            .iter()
            .map(|(r, rec)| (*r, Step::Write(rec)))
            .collect();
        for r in &pending_first {
            ordered.insert(*r, Step::PendingFirst);
        }
        let mut produced: Vec<u64> = Vec::new();
        let mut first_cancel: Option<u64> = None;
        let (mut mutations, mut cancels_bumps) = (0u64, 0u64);
        for (revision, step) in &ordered {
            match step {
                Step::PendingFirst => {
                    assert_eq!(
                        first_cancel, None,
                        "{id}: a 202 bumped after a cancel request"
                    );
                    first_cancel = Some(*revision);
                    produced.push(*revision);
                    cancels_bumps += 1;
                }
                Step::Write(rec) if rec.action() == "cancel_flow" => {
                    assert_eq!(rec.body["result"]["cancelled"], true);
                    assert_eq!(rec.body["result"]["flow"]["status"], "cancelled");
                    assert!(
                        first_cancel.is_some(),
                        "{id}: cancelled at {revision} before any cancellation request"
                    );
                    produced.push(*revision);
                    cancels_bumps += 1;
                }
                Step::Write(rec) => {
                    if rec.action() == "request_cancel" && first_cancel.is_none() {
                        first_cancel = Some(*revision);
                    }
                    produced.push(*revision);
                    mutations += 1;
                }
            }
            // A cancellation request's own revision may have been seen by nobody.
            if let Some(shown) = states.get(&(id.clone(), *revision)) {
                assert_eq!(
                    shown["cancelRequestedAt"].is_u64(),
                    first_cancel.is_some(),
                    "{id} at {revision}: {shown}"
                );
            }
        }
        for (revision, _) in pending.iter().filter(|(r, _)| claimed.contains_key(r)) {
            assert!(
                first_cancel.is_some_and(|first| first <= *revision),
                "{id}: a 202 that changed nothing before any cancel request"
            );
        }
        let expected: Vec<u64> = (1..=flow.revision).collect();
        assert_eq!(produced, expected, "{id}: produced revisions");
        assert_eq!(
            flow.revision,
            mutations + cancels_bumps,
            "{id}: revision is not the count of acknowledged writes"
        );
        bumps_total += flow.revision;

        // Every observed state sits at a revision some write produced (or 0), and the final state
        // is the one observed at the final revision.
        for ((state_id, revision), _) in states.range((id.clone(), 0)..=(id.clone(), u64::MAX)) {
            assert_eq!(state_id, id);
            assert!(
                *revision == 0 || produced.binary_search(revision).is_ok(),
                "{id}: a state at revision {revision} that no write produced"
            );
        }
        let final_json = stored(flow, *owner);
        if let Some(last_seen) = states.get(&(id.clone(), flow.revision)) {
            assert_eq!(last_seen, &final_json, "{id}: final state");
        } else {
            panic!(
                "{id}: final revision {} was never acknowledged",
                flow.revision
            );
        }

        // ---- 6. tasks ----
        let mut acknowledged: BTreeSet<String> = BTreeSet::new();
        let mut by_run: BTreeMap<String, String> = BTreeMap::new();
        for rec in recs
            .iter()
            .filter(|r| r.action() == "run_task" && r.status == 200 && r.flow_id() == Some(id))
        {
            let task = &rec.body["result"]["task"];
            let task_id = task["taskId"].as_str().unwrap().to_owned();
            assert_eq!(task["parentFlowId"], id.as_str());
            assert!(rec.body["result"]["flow"]["cancelRequestedAt"].is_null());
            if let Some(run) = rec.request["runId"].as_str() {
                let first = by_run.entry(run.to_owned()).or_insert(task_id.clone());
                assert_eq!(first, &task_id, "{id}: run {run} made two tasks");
            }
            acknowledged.insert(task_id);
        }
        let stored: BTreeSet<String> = tasks.iter().map(Task::id_string).collect();
        assert_eq!(stored, acknowledged, "{id}: stored tasks vs acknowledged");
        for task in tasks {
            assert_eq!(task.parent_flow_id, flow.flow_id);
            assert_eq!(&*task.owner_key, OWNERS[*owner]);
            assert_eq!(&*task.requester_session_key, OWNERS[*owner]);
            let held = task.label.as_deref() == Some("hold");
            if !held && flow_writes.iter().any(|r| r.action() == "cancel_flow") {
                assert_eq!(
                    task.status,
                    TaskStatus::Cancelled,
                    "{id}: task not cancelled"
                );
            }
            if held {
                assert!(task.status.is_active(), "{id}: a held task ended");
            }
        }
    }
    assert!(writes.is_empty(), "writes on flows that do not exist");
    let task_total: usize = end.flows.values().map(|(_, _, t)| t.len()).sum();
    assert_eq!(end.task_count, task_total);

    // The run must have exercised what it claims to.
    let count = |action: &str, status: u16, code: &str| {
        counts
            .get(&(action.to_owned(), status, code.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let conflicts: usize = MUTATIONS
        .iter()
        .map(|a| count(a, 409, "revision_conflict"))
        .sum();
    let applied: usize = MUTATIONS.iter().map(|a| count(a, 200, "")).sum();
    let foreign: usize = MUTATIONS.iter().map(|a| count(a, 404, "not_found")).sum();
    assert!(conflicts >= 20, "too few conflicts: {counts:?}");
    assert!(applied >= 100, "too few applied mutations: {counts:?}");
    assert!(
        foreign >= 10,
        "too few foreign or missing flows: {counts:?}"
    );
    assert!(count("run_task", 200, "") >= 50, "{counts:?}");
    assert!(count("cancel_flow", 200, "") >= 1, "{counts:?}");
    assert!(
        count("cancel_flow", 202, "cancel_pending") >= 1,
        "{counts:?}"
    );
    assert!(bumps_total > 0);
    eprintln!(
        "{} requests, {} flows, {} tasks, {bumps_total} revision bumps, {applied} mutations \
         applied, {conflicts} revision conflicts, {foreign} mutations on foreign or missing flows, \
         cancel_flow {} x 200 / {} x 202",
        recs.len(),
        end.flows.len(),
        end.task_count,
        count("cancel_flow", 200, ""),
        count("cancel_flow", 202, "cancel_pending"),
    );
}

/// After the storm, every acknowledged flow through every route: found by its owner's routes at
/// its final state, a missing flow to the other owner.
async fn read_back(client: &mut Client, end: &Final) {
    for (id, (owner, flow, tasks)) in &end.flows {
        for (route, spec) in ROUTES.iter().enumerate() {
            let rec = client
                .send(route, json!({"action": "get_flow", "flowId": id}))
                .await;
            assert_eq!(rec.status, 200);
            let shown = &rec.body["result"]["flow"];
            if spec.owner == *owner {
                assert_eq!(answered(shown), stored(flow, *owner));
            } else {
                assert!(shown.is_null(), "{id} visible to another owner");
            }
        }
        let route = ROUTES.iter().position(|r| r.owner == *owner).unwrap();
        let rec = client
            .send(route, json!({"action": "get_task_summary", "flowId": id}))
            .await;
        assert_eq!(rec.body["result"]["summary"]["total"], tasks.len());
    }
    for (route, spec) in ROUTES.iter().enumerate() {
        let rec = client.send(route, json!({"action": "list_flows"})).await;
        let listed: BTreeSet<&str> = rec.body["result"]["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["flowId"].as_str().unwrap())
            .collect();
        let owned: BTreeSet<&str> = end
            .flows
            .iter()
            .filter(|(_, (o, _, _))| *o == spec.owner)
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(listed, owned, "list_flows of {}", spec.id);
    }
}

fn local_services(store: &MemoryStore) -> Arc<Vec<TaskFlowActionService<MemoryStore>>> {
    Arc::new(
        ROUTES
            .iter()
            .map(|r| {
                TaskFlowActionService::new(store.clone(), TaskFlowRoute::new(r.id, OWNERS[r.owner]))
            })
            .collect(),
    )
}

/// Seeds two flows per route, then runs `workers` clients of `steps` actions each.
async fn storm(
    mut make_client: impl AsyncFnMut() -> Client,
    seed: u64,
    workers: usize,
    steps: usize,
) -> Vec<Rec> {
    let registry = Arc::new(Registry::default());
    let mut recs = Vec::new();
    let mut seeder = make_client().await;
    let mut rng = Rng(seed);
    for (route, spec) in ROUTES.iter().enumerate() {
        for n in 0..2 {
            let rec = seeder
                .send(route, create_request(&mut rng, &format!("seed{route}-{n}")))
                .await;
            assert_eq!(rec.status, 200, "{}", rec.body);
            registry.add(
                rec.body["result"]["flow"]["flowId"].as_str().unwrap(),
                spec.owner,
            );
            recs.push(rec);
        }
    }
    let mut handles = Vec::new();
    for me in 0..workers {
        let client = make_client().await;
        let worker_seed = seed ^ (me as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
        handles.push(tokio::spawn(worker(
            client,
            Arc::clone(&registry),
            worker_seed,
            steps,
            me,
        )));
    }
    for handle in handles {
        recs.extend(handle.await.unwrap());
    }
    recs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_actions_in_process_keep_every_invariant() {
    for seed in [0x5eed_0001_u64, 0x5eed_0002, 0x5eed_0003] {
        let store = store();
        let services = local_services(&store);
        let recs = storm(async || Client::Local(Arc::clone(&services)), seed, 8, 500).await;
        let end = final_state(&store).await;
        check(&recs, &end);
        read_back(&mut Client::Local(Arc::clone(&services)), &end).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_actions_over_http_keep_every_invariant() {
    let store = store();
    // The storm comes from one address: lift the per-client budgets so nothing is refused for
    // volume (the limits have their own tests).
    let limits = Limits {
        rate_limit: RateLimitConfig::new().max_requests(1_000_000),
        in_flight: InFlightConfig::new().max_per_key(64),
        ..Limits::default()
    };
    let pipeline = WebhookPipeline::new(store.clone(), limits);
    let routes: Vec<ResolvedRoute> = ROUTES
        .iter()
        .map(|r| ResolvedRoute::new(r.id, OWNERS[r.owner], [Secret::new(r.secret).unwrap()]))
        .collect();
    let server = support::serve(pipeline.router(&routes)).await;
    let addr = server.addr;

    let recs = storm(async || Client::http(addr).await, 0x5eed_4177, 8, 300).await;
    let end = final_state(&store).await;
    check(&recs, &end);
    read_back(&mut Client::http(addr).await, &end).await;
    server.shutdown().await;
}
