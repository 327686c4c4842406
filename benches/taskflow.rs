//! ns per call of each TaskFlow action through `TaskFlowActionService` over `MemoryStore`.
//!
//! Method (DESIGN.md): the service is built once; every iteration is `svc.clone().oneshot(req)`;
//! requests are built outside the timed part (`iter_batched`, or prebuilt chunks in
//! `iter_custom` for writes that need a fresh flow or the current revision). The in-memory store's
//! futures are ready at once, so they are driven with `now_or_never` and no runtime. The timed part
//! includes parsing, validation, the store call, building the envelope and serialising it to bytes
//! (what a server does when it polls the body).
//!
//! Run: `cargo bench --bench taskflow -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_webhooks::{
    TaskFlowActionService,
    body::BufferedBody,
    taskflow::{MemoryStore, MemoryStoreConfig, TaskFlowRoute},
};

const OWNER: &str = "agent:main:hooks";
const CHUNK: u64 = 2_000;

type Svc = TaskFlowActionService<MemoryStore>;

fn service() -> Svc {
    let store = MemoryStore::with_config(
        MemoryStoreConfig::new()
            .max_flows_per_owner(None)
            .max_tasks_per_flow(None),
    );
    TaskFlowActionService::new(store, TaskFlowRoute::new("bench", OWNER))
}

fn request(body: &Value) -> Request<BufferedBody> {
    Request::post("/plugins/webhooks/bench")
        .header("content-type", "application/json")
        .body(BufferedBody::new(body.to_string()))
        .unwrap()
}

fn call(svc: &Svc, req: Request<BufferedBody>) -> u16 {
    let response = svc.clone().oneshot(req).now_or_never().unwrap().unwrap();
    let status = response.status().as_u16();
    // Serialising is part of answering: the envelope is written when the body is polled.
    let body = response.into_body().collect().now_or_never().unwrap();
    black_box(body.unwrap().to_bytes());
    status
}

fn create(svc: &Svc, extra: Value) -> (String, u64) {
    let mut body = json!({"action": "create_flow", "goal": "triage the inbox"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let response = svc
        .clone()
        .oneshot(request(&body))
        .now_or_never()
        .unwrap()
        .unwrap();
    let flow = &response.body().json_value().unwrap()["result"]["flow"];
    (flow["flowId"].as_str().unwrap().to_owned(), 0)
}

fn run_task(svc: &Svc, fid: &str, status: &str) {
    let body = json!({"action": "run_task", "flowId": fid, "runtime": "subagent",
                      "task": "summarise", "status": status});
    assert_eq!(call(svc, request(&body)), 200);
}

/// A read: the same request over and over against a prepared store.
fn steady(c: &mut Criterion, name: &str, svc: &Svc, body: Value, status: u16) {
    assert_eq!(call(svc, request(&body)), status, "{name}");
    c.bench_function(name, |b| {
        b.iter_batched(
            || request(&body),
            |req| black_box(call(svc, req)),
            BatchSize::SmallInput,
        )
    });
}

/// A write needing fresh state: `prepare(n)` builds a service and `n` requests, untimed.
fn chunked(
    c: &mut Criterion,
    name: &str,
    prepare: impl Fn(u64) -> (Svc, Vec<Request<BufferedBody>>),
) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let (svc, requests) = prepare(n);
                let start = Instant::now();
                for req in requests {
                    black_box(call(&svc, req));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
}

/// A mutation applied `n` times in a row to one flow, each with the right revision.
fn mutation(c: &mut Criterion, name: &str, body: Value) {
    chunked(c, name, |n| {
        let svc = service();
        let (fid, _) = create(&svc, json!({"stateJson": {"step": 1}}));
        let requests = (0..n)
            .map(|rev| {
                let mut body = body.clone();
                body["flowId"] = json!(fid);
                body["expectedRevision"] = json!(rev);
                request(&body)
            })
            .collect();
        (svc, requests)
    });
}

fn benches(c: &mut Criterion) {
    // Reads against an owner with 10 flows, one with 5 tasks.
    let svc = service();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(create(&svc, json!({"stateJson": {"step": 1}})).0);
    }
    for _ in 0..5 {
        run_task(&svc, &ids[0], "queued");
    }
    let fid = ids[0].clone();
    steady(
        c,
        "get_flow",
        &svc,
        json!({"action": "get_flow", "flowId": fid}),
        200,
    );
    steady(
        c,
        "get_flow (missing)",
        &svc,
        json!({"action": "get_flow", "flowId": "00000000-0000-4000-8000-000000000000"}),
        200,
    );
    steady(
        c,
        "list_flows (10 flows)",
        &svc,
        json!({"action": "list_flows"}),
        200,
    );
    steady(
        c,
        "find_latest_flow (10 flows)",
        &svc,
        json!({"action": "find_latest_flow"}),
        200,
    );
    steady(
        c,
        "resolve_flow (flow id)",
        &svc,
        json!({"action": "resolve_flow", "token": fid}),
        200,
    );
    steady(
        c,
        "resolve_flow (session key, 10 flows)",
        &svc,
        json!({"action": "resolve_flow", "token": OWNER}),
        200,
    );
    steady(
        c,
        "get_task_summary (5 tasks)",
        &svc,
        json!({"action": "get_task_summary", "flowId": fid}),
        200,
    );
    steady(
        c,
        "run_task (idempotent repeat)",
        &svc,
        json!({"action": "run_task", "flowId": fid, "runtime": "acp", "task": "t", "runId": "r1"}),
        200,
    );
    steady(
        c,
        "finish_flow (revision_conflict)",
        &svc,
        json!({"action": "finish_flow", "flowId": fid, "expectedRevision": 99}),
        409,
    );
    steady(
        c,
        "invalid_request (unknown field)",
        &svc,
        json!({"action": "get_flow", "flowId": fid, "extra": 1}),
        400,
    );
    c.bench_function("invalid request body (not JSON)", |b| {
        b.iter_batched(
            || {
                Request::post("/")
                    .body(BufferedBody::from("{nope"))
                    .unwrap()
            },
            |req| black_box(call(&svc, req)),
            BatchSize::SmallInput,
        )
    });

    // Writes.
    chunked(c, "create_flow", |n| {
        let svc = service();
        let body =
            json!({"action": "create_flow", "goal": "triage the inbox", "stateJson": {"step": 1}});
        (svc, (0..n).map(|_| request(&body)).collect())
    });
    mutation(
        c,
        "set_waiting",
        json!({"action": "set_waiting", "waitJson": {"for": "approval"}}),
    );
    mutation(
        c,
        "resume_flow",
        json!({"action": "resume_flow", "status": "running"}),
    );
    mutation(
        c,
        "finish_flow",
        json!({"action": "finish_flow", "stateJson": {"done": true}}),
    );
    mutation(
        c,
        "fail_flow",
        json!({"action": "fail_flow", "blockedSummary": "broke"}),
    );
    mutation(c, "request_cancel", json!({"action": "request_cancel"}));
    chunked(c, "run_task (new task)", |n| {
        let svc = service();
        // A fresh flow every 100 tasks keeps the flow's task list at a realistic size.
        let mut requests = Vec::with_capacity(n as usize);
        let mut fid = String::new();
        for i in 0..n {
            if i % 100 == 0 {
                fid = create(&svc, json!({})).0;
            }
            let body = json!({"action": "run_task", "flowId": fid, "runtime": "subagent",
                              "task": "summarise", "runId": format!("run-{i}")});
            requests.push(request(&body));
        }
        (svc, requests)
    });
    chunked(c, "cancel_flow (2 active tasks)", |n| {
        let svc = service();
        let requests = (0..n)
            .map(|_| {
                let (fid, _) = create(&svc, json!({}));
                run_task(&svc, &fid, "queued");
                run_task(&svc, &fid, "running");
                request(&json!({"action": "cancel_flow", "flowId": fid}))
            })
            .collect();
        (svc, requests)
    });
}

criterion_group!(taskflow, benches);
criterion_main!(taskflow);
