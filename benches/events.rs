//! Event routes (SPEC §8), each figure beside its peer in the same run:
//!
//! - `verify/<bytes>`: every signature scheme for a 1 KiB and a 64 KiB body, beside the bare
//!   HMAC-SHA256 of the same bytes (what any verifier must pay) and beside the `standardwebhooks`
//!   crate (the Standard Webhooks reference library for Rust) verifying the same delivery.
//! - `event_route`: a signed GitHub `pull_request` through the whole pipeline in process (verify,
//!   de-duplicate, templates, create flow, run task), beside the same flow and task created through
//!   the action API with two requests, and beside a duplicate delivery.
//!
//! `cargo bench --bench events -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_webhooks::body::BufferedBody;
use tower_webhooks::secret::Secret;
use tower_webhooks::signature::{SignatureScheme, SignatureVerifier, VerifySignatureConfig};
use tower_webhooks::{WebhookPipeline, WebhooksConfig};

type HmacSha256 = Hmac<sha2::Sha256>;

const SECRET: &str = "bench-signing-secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_static(n),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

/// A JSON body of exactly `len` bytes.
fn body(len: usize) -> Vec<u8> {
    let mut body = br#"{"type":"invoice.paid","id":"evt_1","pad":""#.to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn verify(c: &mut Criterion) {
    let ts = now_secs();
    let standard_key = base64::engine::general_purpose::STANDARD
        .decode(STANDARD_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    for len in [1_024usize, 65_536] {
        let body = body(len);
        let mut group = c.benchmark_group(format!("verify/{len}"));
        let keyed = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        group.bench_function("bare_hmac_sha256", |b| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(&body));
                black_box(mac.finalize().into_bytes())
            })
        });

        let ours = |scheme: SignatureScheme, secret: &str| {
            SignatureVerifier::new(VerifySignatureConfig::new(
                scheme,
                [Secret::new(secret).unwrap()],
            ))
            .unwrap()
        };
        let ts_text = ts.to_string();
        let cases: Vec<(&str, SignatureVerifier, HeaderMap)> = vec![
            (
                "github",
                ours(SignatureScheme::GitHub, SECRET),
                headers(&[(
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(mac(SECRET.as_bytes(), &[&body]))),
                )]),
            ),
            (
                "hmac-sha256",
                ours(SignatureScheme::from_name("hmac-sha256").unwrap(), SECRET),
                headers(&[(
                    "x-webhook-signature",
                    hex::encode(mac(SECRET.as_bytes(), &[&body])),
                )]),
            ),
            (
                "stripe",
                ours(SignatureScheme::Stripe, SECRET),
                headers(&[(
                    "stripe-signature",
                    format!(
                        "t={ts},v1={}",
                        hex::encode(mac(SECRET.as_bytes(), &[ts_text.as_bytes(), b".", &body]))
                    ),
                )]),
            ),
            (
                "slack",
                ours(SignatureScheme::Slack, SECRET),
                headers(&[
                    ("x-slack-request-timestamp", ts_text.clone()),
                    (
                        "x-slack-signature",
                        format!(
                            "v0={}",
                            hex::encode(mac(
                                SECRET.as_bytes(),
                                &[b"v0:", ts_text.as_bytes(), b":", &body]
                            ))
                        ),
                    ),
                ]),
            ),
            (
                "standard-webhooks",
                ours(SignatureScheme::StandardWebhooks, STANDARD_SECRET),
                headers(&[
                    ("webhook-id", "msg_1".to_owned()),
                    ("webhook-timestamp", ts_text.clone()),
                    (
                        "webhook-signature",
                        format!(
                            "v1,{}",
                            base64::engine::general_purpose::STANDARD.encode(mac(
                                &standard_key,
                                &[b"msg_1.", ts_text.as_bytes(), b".", &body]
                            ))
                        ),
                    ),
                ]),
            ),
        ];
        for (name, verifier, sent) in &cases {
            assert!(verifier.verify(sent, &body).is_ok(), "{name}");
            group.bench_function(BenchmarkId::new("ours", name), |b| {
                b.iter(|| black_box(verifier.verify(black_box(sent), black_box(&body))).is_ok())
            });
        }
        let peer = standardwebhooks::Webhook::new(STANDARD_SECRET).unwrap();
        let standard_headers = &cases.last().unwrap().2;
        assert!(peer.verify(&body, standard_headers).is_ok());
        group.bench_function(
            BenchmarkId::new("standardwebhooks_crate", "standard-webhooks"),
            |b| b.iter(|| black_box(peer.verify(black_box(&body), standard_headers)).is_ok()),
        );
        group.finish();
    }
}

const ROUTES: &str = r#"{
  routes: {
    github: {
      sessionKey: "agent:main:main",
      auth: { mode: "signature", scheme: "github", secret: "bench-signing-secret" },
      events: ["pull_request"],
      idempotency: {},
      dispatch: { mode: "taskflow", taskflow: {
        goalTemplate: "Review PR #{pull_request.number}: {pull_request.title}",
        runTask: { taskTemplate: "Review {pull_request.html_url}" },
      } },
    },
    actions: { sessionKey: "agent:main:main", secret: "bench-signing-secret" },
  },
}"#;

fn event_route(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let resolved = WebhooksConfig::from_json5(ROUTES).unwrap().resolve();
    let mut limits = resolved.limits.clone();
    // The bench is one client sending as fast as it can: lift the per-client budget and the
    // store's caps, which a long run of creations would reach.
    limits.rate_limit.max_requests = u32::MAX;
    limits.store = limits
        .store
        .max_flows_per_owner(None)
        .max_bytes_per_owner(None);
    let pipeline = WebhookPipeline::in_memory(limits);
    let router = pipeline.router(&resolved.routes);
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "opened",
        "pull_request": {"number": 7, "title": "Fix the flaky test", "html_url": "https://github.com/o/r/pull/7"},
    }))
    .unwrap();
    let signature = format!("sha256={}", hex::encode(mac(SECRET.as_bytes(), &[&body])));
    let delivery = AtomicU64::new(0);
    let github = |id: u64| {
        let mut request = Request::post("/plugins/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id.to_string())
            .header("x-hub-signature-256", signature.as_str())
            .body(BufferedBody::from(body.clone()))
            .unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from(([203, 0, 113, 7], 40000)));
        request
    };
    let action = |json: String| {
        let mut request = Request::post("/plugins/webhooks/actions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer bench-signing-secret")
            .body(BufferedBody::from(json))
            .unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from(([203, 0, 113, 7], 40000)));
        request
    };

    let mut group = c.benchmark_group("event_route");
    group.bench_function("github_pull_request_flow_and_task", |b| {
        b.iter_batched(
            || github(delivery.fetch_add(1, Ordering::Relaxed)),
            |request| {
                // Dropped inside the timed part: a response holds its in-flight slot until then.
                let status = rt
                    .block_on(router.clone().oneshot(request))
                    .unwrap()
                    .status();
                assert_eq!(status, 202);
            },
            BatchSize::SmallInput,
        )
    });
    // The same flow and task through the action API: create_flow, then run_task (the peer a caller
    // without event routes would use; two requests, the second built from the first's answer).
    group.bench_function("action_api_create_flow_then_run_task", |b| {
        b.iter_batched(
            || {
                action(
                    r#"{"action":"create_flow","goal":"Review PR #7: Fix the flaky test"}"#.into(),
                )
            },
            |request| {
                rt.block_on(async {
                    let response = router.clone().oneshot(request).await.unwrap();
                    let bytes = http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let created: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let flow_id = created["result"]["flow"]["flowId"].as_str().unwrap();
                    let run = action(format!(
                        r#"{{"action":"run_task","flowId":"{flow_id}","runtime":"acp","task":"Review https://github.com/o/r/pull/7","runId":"r"}}"#
                    ));
                    let status = router.clone().oneshot(run).await.unwrap().status();
                    assert_eq!(status, 200);
                })
            },
            BatchSize::SmallInput,
        )
    });
    rt.block_on(router.clone().oneshot(github(u64::MAX)))
        .unwrap();
    group.bench_function("github_duplicate_delivery", |b| {
        b.iter_batched(
            || github(u64::MAX),
            |request| {
                let status = rt
                    .block_on(router.clone().oneshot(request))
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, verify, event_route);
criterion_main!(benches);
