//! Hostile clients over real sockets against the assembled gateway pipeline, served through the
//! crate's own accept loop: slow heads, stalled bodies, connections dropped by the thousand, requests
//! pipelined behind a rejection, oversized and duplicated headers, HTTP/2 streams reset mid-body,
//! and floods from tens of thousands of distinct client addresses.
//!
//! Every case checks what the server answered (status, body, whether it closed the connection) and
//! what it kept (in-flight slots, limiter keys, the store). Nothing here asserts how fast anything
//! happened; deadlines are short only so that the file runs quickly.
//!
//! Many clients are told apart by their source address: on Linux every 127.0.0.0/8 address is a
//! loopback source, so each case takes its own block `127.<block>.x.y` and the well-behaved client
//! stays at 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use serde_json::json;
use support::{
    RawResponse, TestServer, connect, connect_from, eventually, parse_responses, post_bytes, raw,
    read_response, read_until_closed, serve_with,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_webhooks::gateway::{DEFAULT_ROUTE_ID, Gateway};
use tower_webhooks::keyed::NormalizedPathAndPeerIp;
use tower_webhooks::serve::ServeOptions;
use tower_webhooks::{Limits, MemoryStore, ResolvedRoute, Secret, TrustedProxies, WebhookPipeline};

const SECRET: &str = "hostile-secret-0123456789";
const SESSION: &str = "agent:main:main";
const PATH: &str = "/plugins/webhooks/zap";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Distinct client addresses in each flood.
const FLOOD_ADDRESSES: usize = 20_000;
/// Connections a flood keeps open at once.
const FLOOD_CONCURRENCY: usize = 64;

type Pipeline = WebhookPipeline<MemoryStore>;

fn route() -> ResolvedRoute {
    ResolvedRoute::new("zap", SESSION, [Secret::new(SECRET).unwrap()])
}

/// Limits for the cases that are not about the rate limit: a budget no test exhausts.
fn roomy() -> Limits {
    let mut limits = Limits::default();
    limits.rate_limit.max_requests = 1_000_000;
    limits
}

async fn start(limits: Limits, options: ServeOptions) -> (TestServer, Pipeline) {
    let pipeline = WebhookPipeline::in_memory(limits);
    let server = serve_with(pipeline.router(&[route()]), options).await;
    (server, pipeline)
}

fn bearer() -> String {
    format!("Bearer {SECRET}")
}

/// A complete, authorised request to `path` with `body`.
fn authorised_to(path: &str, body: &str) -> Vec<u8> {
    let auth = bearer();
    post_bytes(
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body.as_bytes(),
    )
}

fn authorised(body: &str) -> Vec<u8> {
    authorised_to(PATH, body)
}

fn create_flow(goal: &str) -> String {
    json!({"action": "create_flow", "goal": goal}).to_string()
}

const LIST_FLOWS: &str = r#"{"action":"list_flows"}"#;

/// An authorised head declaring `length` body bytes, followed by only `sent` of them.
fn stalled_body(length: usize, sent: &[u8]) -> Vec<u8> {
    let auth = bearer();
    let length = length.to_string();
    post_bytes(
        PATH,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("content-length", &length),
        ],
        sent,
    )
}

/// A request with exactly these header lines (no `Content-Length` added) and `body`.
fn with_headers(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut request = format!("POST {PATH} HTTP/1.1\r\nhost: x\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request.into_bytes()
}

fn assert_text(response: &RawResponse, status: u16, text: &str) {
    assert_eq!(
        (response.status, response.text().as_str()),
        (status, text),
        "{response:?}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{response:?}"
    );
}

fn assert_created(response: &RawResponse, goal: &str) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["result"]["flow"]["goal"], goal);
}

/// Reads until the server closes the connection, and expects exactly one answer in all it sent:
/// whatever was pipelined behind the request went unanswered.
async fn only_answer(stream: &mut TcpStream, what: &str) -> RawResponse {
    let mut answers = parse_responses(&read_until_closed(stream).await);
    assert_eq!(answers.len(), 1, "{what}: {answers:?}");
    answers.remove(0)
}

/// The in-flight key of `PATH` for a client at `peer`.
fn in_flight_key(pipeline: &Pipeline, peer: IpAddr) -> u64 {
    let mut probe = Request::post(PATH).body(()).unwrap();
    probe.extensions_mut().insert(SocketAddr::new(peer, 1));
    pipeline
        .in_flight_limiter()
        .hash_request(&NormalizedPathAndPeerIp::new(), &probe)
}

/// The `n`-th address of block `block`: `127.<block>.x.y`, never `.0` or `.255` in the last octet.
fn source(block: u8, n: usize) -> IpAddr {
    let (high, low) = (n / 250, n % 250);
    assert!(high < 256, "address block {block} exhausted");
    IpAddr::V4(Ipv4Addr::new(127, block, high as u8, low as u8 + 1))
}

/// Sends `request` once from each of `count` distinct addresses of `block`, a bounded number at a
/// time, each on its own connection, and tallies the answers by status and body.
async fn flood(
    addr: SocketAddr,
    block: u8,
    count: usize,
    request: &[u8],
) -> BTreeMap<(u16, String), usize> {
    futures_util::stream::iter(0..count)
        .map(|n| async move {
            let mut stream = connect_from(addr, source(block, n)).await;
            stream.write_all(request).await.unwrap();
            let response = read_response(&mut stream).await;
            (response.status, response.text())
        })
        .buffer_unordered(FLOOD_CONCURRENCY)
        .fold(BTreeMap::new(), |mut tally, answer| async move {
            *tally.entry(answer).or_insert(0) += 1;
            tally
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off_while_a_normal_client_is_served() {
    let options = ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let (server, pipeline) = start(roomy(), options).await;
    let addr = server.addr;

    // Kinds of slow client, 50 connections of each.
    const SILENT: usize = 0; // connects and sends nothing
    const PREFACE_BYTE: usize = 1; // one byte that could open the HTTP/2 preface
    const HALF_PREFACE: usize = 2; // half of the HTTP/2 preface
    const HALF_HEAD: usize = 3; // half an HTTP/1 head, then nothing
    const TRICKLE: usize = 4; // an HTTP/1 head one header line every 50 ms, without end
    const IDLE_KEEP_ALIVE: usize = 5; // one complete request, then an idle keep-alive connection
    const KINDS: usize = 6;
    let mut slow = Vec::new();
    for i in 0..KINDS * 50 {
        let kind = i % KINDS;
        let mut stream = connect(addr).await;
        let first: Vec<u8> = match kind {
            SILENT => vec![],
            PREFACE_BYTE => b"P".to_vec(),
            HALF_PREFACE => b"PRI * HTTP/2.0\r\n".to_vec(),
            HALF_HEAD => format!("POST {PATH} HTTP/1.1\r\nhost: x\r\n").into_bytes(),
            TRICKLE => format!("POST {PATH} HTTP/1.1\r\n").into_bytes(),
            IDLE_KEEP_ALIVE => authorised(LIST_FLOWS),
            _ => unreachable!(),
        };
        stream.write_all(&first).await.unwrap();
        if kind == IDLE_KEEP_ALIVE {
            let response = read_response(&mut stream).await;
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(response.header("connection"), None, "kept alive");
        }
        slow.push((kind, stream));
    }

    // A well-behaved client is served while all of them hang on.
    assert_created(
        &raw(addr, &authorised(&create_flow("served"))).await,
        "served",
    );

    let mut waits = Vec::new();
    for (kind, stream) in slow {
        waits.push(tokio::spawn(async move {
            let (mut reader, mut writer) = stream.into_split();
            let trickle = async {
                if kind == TRICKLE {
                    // Simulates a slow client, not a wait for the server: stops at the first
                    // failed write, or after 200 lines (10 s).
                    for line in 0..200 {
                        let header = format!("x-slow-{line}: a\r\n");
                        if writer.write_all(header.as_bytes()).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            let closed = async {
                let mut received = Vec::new();
                let read = tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut received);
                let outcome = tokio::time::timeout(Duration::from_secs(10), read)
                    .await
                    .unwrap_or_else(|_| panic!("slow client of kind {kind} never cut off"));
                // A reset counts as closed too.
                drop(outcome);
                received
            };
            let ((), received) = tokio::join!(trickle, closed);
            (kind, received)
        }));
    }
    for wait in waits {
        let (kind, received) = wait.await.unwrap();
        // hyper closes a timed-out head without an answer; so does the accept loop when the first
        // bytes never come.
        assert_eq!(
            String::from_utf8_lossy(&received),
            "",
            "slow client of kind {kind}"
        );
    }
    assert_eq!(pipeline.store().flow_count(), 1);
    assert_eq!(pipeline.in_flight_limiter().tracked_keys(), 0);
    // The server still serves.
    assert_created(
        &raw(addr, &authorised(&create_flow("after"))).await,
        "after",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_frees_its_slot() {
    let mut limits = roomy();
    // Long enough that the 429 below is asked for while both bodies still stall; short enough to
    // keep the test quick.
    limits.body.timeout = Duration::from_millis(1_000);
    limits.in_flight.max_per_key = 2;
    let (server, pipeline) = start(limits, ServeOptions::default()).await;
    let addr = server.addr;
    let limiter = pipeline.in_flight_limiter().clone();
    let key = in_flight_key(&pipeline, LOCALHOST);
    let auth = bearer();

    for round in 0..2 {
        // Two requests whose declared bodies never arrive: one by length, one chunked.
        let mut by_length = connect(addr).await;
        by_length
            .write_all(&stalled_body(100, br#"{"action":"#))
            .await
            .unwrap();
        let mut chunked = connect(addr).await;
        let head = with_headers(
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("transfer-encoding", "chunked"),
            ],
            "a\r\n{\"action\":\r\n",
        );
        chunked.write_all(&head).await.unwrap();
        eventually("both stalled requests hold a slot", || {
            limiter.in_flight(key) == 2
        })
        .await;

        // Both slots are taken: a third request is refused at once and changes nothing.
        let refused = raw(addr, &authorised(&create_flow("refused"))).await;
        assert_text(&refused, 429, "Too Many Requests");
        assert_eq!(refused.header("retry-after"), Some("1"));

        for stream in [&mut by_length, &mut chunked] {
            let response = only_answer(stream, "stalled body").await;
            assert_text(&response, 408, "Request body timeout");
            assert_eq!(response.header("connection"), Some("close"));
        }
        // Each slot was given back before its 408 went out: the next requests on the same path
        // from the same peer are admitted, not refused.
        assert_eq!(limiter.in_flight(key), 0);
        for n in 0..2 {
            let goal = format!("round {round}, request {n}");
            assert_created(&raw(addr, &authorised(&create_flow(&goal))).await, &goal);
        }
    }
    assert_eq!(pipeline.store().flow_count(), 4, "only the admitted ones");
    assert_eq!(limiter.tracked_keys(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_dropped_connections_leave_no_slot_behind() {
    const CONNECTIONS: usize = 5_000;
    const BATCH: usize = 100;
    const BLOCK: u8 = 20;
    let (server, pipeline) = start(Limits::default(), ServeOptions::default()).await;
    let addr = server.addr;

    // How each connection is dropped; each comes from its own address, so a slot that is never
    // given back would show as a tracked key.
    const AFTER_CONNECT: usize = 0;
    const MID_HEAD: usize = 1;
    const MID_BODY: usize = 2; // holding an in-flight slot, then closed
    const MID_BODY_RESET: usize = 3; // holding an in-flight slot, then reset (RST)
    const UNREAD_RESPONSE: usize = 4; // a whole request, gone before the answer
    const MID_PREFACE: usize = 5; // the HTTP/2 preface, then gone
    const KINDS: usize = 6;
    for batch in 0..CONNECTIONS / BATCH {
        let mut tasks = Vec::new();
        for n in batch * BATCH..(batch + 1) * BATCH {
            let pipeline = pipeline.clone();
            tasks.push(tokio::spawn(async move {
                let from = source(BLOCK, n);
                let stream = connect_from(addr, from).await;
                drop_connection(stream, n % KINDS, &pipeline, from).await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    async fn drop_connection(
        mut stream: TcpStream,
        kind: usize,
        pipeline: &Pipeline,
        from: IpAddr,
    ) {
        match kind {
            AFTER_CONNECT => {}
            MID_HEAD => {
                let head = format!("POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-ty");
                stream.write_all(head.as_bytes()).await.unwrap();
            }
            MID_BODY | MID_BODY_RESET => {
                stream
                    .write_all(&stalled_body(100, br#"{"action":"create_flow","#))
                    .await
                    .unwrap();
                let key = in_flight_key(pipeline, from);
                let limiter = pipeline.in_flight_limiter();
                eventually("the request holds a slot", || limiter.in_flight(key) == 1).await;
                if kind == MID_BODY_RESET {
                    stream.set_zero_linger().unwrap();
                }
            }
            UNREAD_RESPONSE => {
                stream.write_all(&authorised(LIST_FLOWS)).await.unwrap();
            }
            MID_PREFACE => {
                stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").await.unwrap();
            }
            _ => unreachable!(),
        }
        drop(stream);
    }

    let limiter = pipeline.in_flight_limiter();
    eventually("every dropped request gave its slot back", || {
        limiter.tracked_keys() == 0
    })
    .await;
    assert_created(
        &raw(addr, &authorised(&create_flow("still here"))).await,
        "still here",
    );
    assert_eq!(pipeline.store().flow_count(), 1, "no partial body acted on");
    assert_eq!(
        pipeline.lockout().tracked_ips(),
        0,
        "no failed authentication"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_behind_a_413_is_never_answered() {
    let mut limits = roomy();
    limits.body.max_bytes = 1_024;
    let (server, pipeline) = start(limits, ServeOptions::default()).await;
    let addr = server.addr;

    // Pipelining itself works: requests written back to back are all answered, in order, on one
    // connection (the last one asks the server to close, so the end of the answers is the EOF).
    let auth = bearer();
    let mut all = authorised(&create_flow("first"));
    all.extend_from_slice(&authorised(&create_flow("second")));
    let third = create_flow("third");
    all.extend_from_slice(&post_bytes(
        PATH,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("connection", "close"),
        ],
        third.as_bytes(),
    ));
    let mut stream = connect(addr).await;
    stream.write_all(&all).await.unwrap();
    let answers = parse_responses(&read_until_closed(&mut stream).await);
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (answer, goal) in answers.iter().zip(["first", "second", "third"]) {
        assert_created(answer, goal);
    }
    assert_eq!(pipeline.store().flow_count(), 3);

    let over_by_length = with_headers(
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("content-length", "1025"),
        ],
        "",
    );
    let mut over_by_length_with_body = over_by_length.clone();
    over_by_length_with_body.extend_from_slice(&[b' '; 1025]);
    let mut over_by_stream = with_headers(
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("transfer-encoding", "chunked"),
        ],
        "",
    );
    for _ in 0..3 {
        over_by_stream.extend_from_slice(format!("200\r\n{}\r\n", " ".repeat(512)).as_bytes());
    }
    over_by_stream.extend_from_slice(b"0\r\n\r\n");

    for (name, first) in [
        ("declared length, no body", over_by_length),
        ("declared length, body sent", over_by_length_with_body),
        ("chunked stream", over_by_stream),
    ] {
        let mut request = first;
        request.extend_from_slice(&authorised(&create_flow("smuggled")));
        let mut stream = connect(addr).await;
        stream.write_all(&request).await.unwrap();
        let response = only_answer(&mut stream, name).await;
        assert_text(&response, 413, "Payload too large");
        assert_eq!(response.header("connection"), Some("close"), "{name}");
    }
    assert_eq!(
        pipeline.store().flow_count(),
        3,
        "a request pipelined behind a 413 was acted on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_block_is_refused_and_the_server_carries_on() {
    let (server, pipeline) = start(roomy(), ServeOptions::default()).await;
    let addr = server.addr;

    // More header fields than hyper parses (100): read whole, answered 431, closed.
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-filler-{i}"), "v".to_owned()))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let auth = bearer();
    headers.extend([
        ("content-type", "application/json"),
        ("authorization", &auth),
    ]);
    let body = create_flow("many headers");
    let length = body.len().to_string();
    headers.push(("content-length", &length));
    let mut stream = connect(addr).await;
    stream
        .write_all(&with_headers(&headers, &body))
        .await
        .unwrap();
    let refused = only_answer(&mut stream, "150 header fields").await;
    assert_eq!(refused.status, 431, "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));

    // A 1 MiB header. hyper's limit is about 400 KiB of buffered head; one large read can overshoot
    // it (a 500 KB head arriving in big reads is still parsed), but never up to 1 MiB. hyper stops
    // reading, answers 431 and closes; the bytes it never read may turn the close into a reset
    // that overtakes the 431, so both are accepted, but the connection must end: no 500, no hang.
    let huge = "a".repeat(1 << 20);
    let mut stream = connect(addr).await;
    let request = with_headers(
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("x-huge", &huge),
            ("content-length", &length),
        ],
        &body,
    );
    // The server may stop reading before the whole block is written.
    let _ = stream.write_all(&request).await;
    let answers = parse_responses(&read_until_closed(&mut stream).await);
    assert!(
        answers.is_empty() || (answers.len() == 1 && answers[0].status == 431),
        "{answers:?}"
    );

    assert_eq!(pipeline.store().flow_count(), 0);
    assert_created(
        &raw(addr, &authorised(&create_flow("normal"))).await,
        "normal",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_secret_and_content_type_headers_follow_the_first_value() {
    let (server, pipeline) = start(roomy(), ServeOptions::default()).await;
    let addr = server.addr;
    let right = bearer();
    let wrong = "Bearer not-the-secret".to_owned();
    let json_type = ("content-type", "application/json");
    let secret_header = "x-openclaw-webhook-secret";

    // (headers, expected status); a 200 creates one flow.
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Headers<'_>, u16)> = vec![
        // SPEC §2 step 4: the first Content-Type value decides.
        (
            "json first",
            vec![
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
                ("authorization", &right),
            ],
            200,
        ),
        (
            "text first",
            vec![
                ("content-type", "text/plain"),
                ("content-type", "application/json"),
                ("authorization", &right),
            ],
            415,
        ),
        // SPEC §2.2: the first secret header value is the presented secret.
        (
            "secret header right first",
            vec![json_type, (secret_header, SECRET), (secret_header, "wrong")],
            200,
        ),
        (
            "secret header wrong first",
            vec![json_type, (secret_header, "wrong"), (secret_header, SECRET)],
            401,
        ),
        // An empty first value is an empty secret: 401 without looking further.
        (
            "secret header empty first",
            vec![json_type, (secret_header, ""), (secret_header, SECRET)],
            401,
        ),
        // `Authorization` is read the same way: its first value decides.
        (
            "bearer right first",
            vec![
                json_type,
                ("authorization", &right),
                ("authorization", &wrong),
            ],
            200,
        ),
        (
            "bearer wrong first",
            vec![
                json_type,
                ("authorization", &wrong),
                ("authorization", &right),
            ],
            401,
        ),
        // A first value that is not a bearer token leaves the secret header to decide.
        (
            "basic first, header right",
            vec![
                json_type,
                ("authorization", "Basic eDp5"),
                ("authorization", &right),
                (secret_header, SECRET),
            ],
            200,
        ),
        (
            "basic first, no header",
            vec![
                json_type,
                ("authorization", "Basic eDp5"),
                ("authorization", &right),
            ],
            401,
        ),
        // A bearer token decides alone, even when the secret header is right.
        (
            "bearer wrong, header right",
            vec![
                json_type,
                ("authorization", &wrong),
                (secret_header, SECRET),
            ],
            401,
        ),
    ];
    let mut created = 0;
    for (name, mut headers, status) in cases {
        let body = create_flow(name);
        let length = body.len().to_string();
        headers.push(("content-length", &length));
        let response = raw(addr, &with_headers(&headers, &body)).await;
        match status {
            200 => {
                assert_created(&response, name);
                created += 1;
            }
            415 => assert_text(&response, 415, "Unsupported Media Type"),
            401 => {
                assert_text(&response, 401, "unauthorized");
                assert_eq!(
                    response.header("www-authenticate"),
                    Some("Bearer"),
                    "{name}"
                );
            }
            _ => unreachable!(),
        }
        assert_eq!(pipeline.store().flow_count(), created, "{name}");
    }
    // Ten failures from 127.0.0.1 so far: under the lockout threshold of 20.
    assert!(!pipeline.lockout().is_locked(LOCALHOST));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_content_length_is_accepted_only_when_the_values_agree() {
    let (server, pipeline) = start(roomy(), ServeOptions::default()).await;
    let addr = server.addr;
    let auth = bearer();
    let body = create_flow("agreed");
    let length = body.len().to_string();
    let base = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];

    // The same value twice is one length (RFC 9110 §8.6): served.
    let mut same = base.to_vec();
    same.extend([
        ("content-length", length.as_str()),
        ("content-length", length.as_str()),
    ]);
    assert_created(&raw(addr, &with_headers(&same, &body)).await, "agreed");
    assert_eq!(pipeline.store().flow_count(), 1);

    // Disagreeing values, or the same value as a list: hyper refuses them before any service sees
    // the request, with an empty 400, and closes. The pipelined request after it is not read.
    let list = format!("{length}, {length}");
    let shorter = (body.len() - 1).to_string();
    for (name, values) in [
        ("different values", vec![length.as_str(), shorter.as_str()]),
        (
            "different values, larger second",
            vec![length.as_str(), "100000"],
        ),
        ("a list", vec![list.as_str()]),
        ("not a number", vec!["12abc"]),
    ] {
        let mut headers = base.to_vec();
        headers.extend(values.iter().map(|v| ("content-length", *v)));
        let mut request = with_headers(&headers, &body);
        request.extend_from_slice(&authorised(&create_flow("smuggled")));
        let mut stream = connect(addr).await;
        stream.write_all(&request).await.unwrap();
        let response = only_answer(&mut stream, name).await;
        assert_eq!(response.status, 400, "{name}: {response:?}");
        assert_eq!(response.header("connection"), Some("close"), "{name}");
    }

    // Content-Length beside Transfer-Encoding: chunked: the chunked framing wins (RFC 9112 §6.3),
    // the request is served, and the connection is closed after it, so bytes a front proxy might
    // have framed differently are never read as a second request.
    for te_first in [false, true] {
        let mut headers = base.to_vec();
        let (te, cl) = (("transfer-encoding", "chunked"), ("content-length", "5"));
        if te_first {
            headers.extend([te, cl]);
        } else {
            headers.extend([cl, te]);
        }
        let goal = format!("chunked, te first: {te_first}");
        let body = create_flow(&goal);
        let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        let mut request = with_headers(&headers, &chunked);
        request.extend_from_slice(&authorised(&create_flow("smuggled")));
        let mut stream = connect(addr).await;
        stream.write_all(&request).await.unwrap();
        let response = only_answer(&mut stream, &goal).await;
        assert_created(&response, &goal);
        assert_eq!(response.header("connection"), Some("close"));
    }
    assert_eq!(pipeline.store().flow_count(), 3, "nothing smuggled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_x_forwarded_for_is_read_right_to_left_and_only_from_a_trusted_proxy() {
    let mut limits = Limits::default();
    // One request per client: whose budget a request spent shows which client it was counted as.
    limits.rate_limit.max_requests = 1;
    limits.trusted_proxies = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
    let (server, pipeline) = start(limits, ServeOptions::default()).await;
    let addr = server.addr;

    async fn from(addr: SocketAddr, peer: IpAddr, forwarded: &[&str], goal: &str) -> RawResponse {
        let auth = bearer();
        let body = create_flow(goal);
        let length = body.len().to_string();
        let mut headers = vec![
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("content-length", length.as_str()),
        ];
        headers.extend(forwarded.iter().map(|v| ("x-forwarded-for", *v)));
        let mut stream = connect_from(addr, peer).await;
        stream
            .write_all(&with_headers(&headers, &body))
            .await
            .unwrap();
        read_response(&mut stream).await
    }
    let limited = |response: &RawResponse| assert_text(response, 429, "Too Many Requests");

    // Behind the trusted proxy, two X-Forwarded-For fields read as one list: the client is the
    // rightmost address that is not a trusted proxy.
    let proxy = LOCALHOST;
    assert_created(
        &from(
            addr,
            proxy,
            &["198.51.100.7", "203.0.113.9, 127.0.0.1"],
            "a",
        )
        .await,
        "a",
    );
    limited(&from(addr, proxy, &["203.0.113.9"], "b").await);
    // The leftmost address was never charged.
    assert_created(&from(addr, proxy, &["198.51.100.7"], "c").await, "c");
    // A hop that is not an address ends the walk at the hop to its right: here the proxy itself,
    // so garbage cannot mint a fresh budget.
    assert_created(
        &from(addr, proxy, &["198.51.100.99", "not-an-ip"], "d").await,
        "d",
    );
    limited(&from(addr, proxy, &["198.51.100.98", "still-not-an-ip"], "e").await);

    // From an untrusted peer the header is ignored, however many copies it has.
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert_created(
        &from(addr, stranger, &["192.0.2.1", "192.0.2.2"], "f").await,
        "f",
    );
    limited(&from(addr, stranger, &["192.0.2.3", "192.0.2.4"], "g").await);
    assert_eq!(pipeline.store().flow_count(), 4);
}

/// An HTTP/2 connection over a fresh socket from 127.0.0.1; the connection task ends when the
/// client is dropped.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    h2_client_from(addr, LOCALHOST).await
}

async fn h2_client_from(addr: SocketAddr, source: IpAddr) -> h2::client::SendRequest<Bytes> {
    let (client, connection) = h2::client::handshake(connect_from(addr, source).await)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Opens a stream declaring `length` body bytes and sends `sent` of them, without ending it.
async fn h2_open(
    client: &h2::client::SendRequest<Bytes>,
    length: usize,
    sent: &'static [u8],
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = Request::post(format!("http://localhost{PATH}"))
        .header("content-type", "application/json")
        .header("authorization", bearer())
        .header("content-length", length)
        .body(())
        .unwrap();
    let mut client = client.clone().ready().await.unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(sent), false).unwrap();
    (response, body)
}

/// Sends a complete request on a new stream and reads its answer.
async fn h2_request(client: &h2::client::SendRequest<Bytes>, body: String) -> (u16, String) {
    let length = body.len();
    let request = Request::post(format!("http://localhost{PATH}"))
        .header("content-type", "application/json")
        .header("authorization", bearer())
        .header("content-length", length)
        .body(())
        .unwrap();
    let mut client = client.clone().ready().await.unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    // A request refused on its head (429) may be answered and closed before its body goes out;
    // the body is then refused here, and the answer is what counts.
    let _ = stream.send_data(Bytes::from(body), true);
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("no HTTP/2 response within 10 s")
        .unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8(text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_reset_mid_body_give_their_slots_back() {
    let mut limits = roomy();
    limits.in_flight.max_per_key = 4;
    let (server, pipeline) = start(limits, ServeOptions::default()).await;
    let addr = server.addr;
    let limiter = pipeline.in_flight_limiter().clone();
    let key = in_flight_key(&pipeline, LOCALHOST);
    let created = |(status, text): (u16, String), goal: &str| {
        assert_eq!(status, 200, "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["result"]["flow"]["goal"], goal);
    };

    // Four streams on one connection, each stuck halfway through its body: all slots are taken.
    let client = h2_client(addr).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(h2_open(&client, 100, br#"{"action":"create_flow","#).await);
    }
    eventually("the four streams hold a slot each", || {
        limiter.in_flight(key) == 4
    })
    .await;
    let (status, text) = h2_request(&client, create_flow("refused")).await;
    assert_eq!((status, text.as_str()), (429, "Too Many Requests"));

    // The client resets them: the slots come back, the connection carries on.
    for (response, mut body) in open {
        body.send_reset(h2::Reason::CANCEL);
        drop(response);
    }
    eventually("reset streams gave their slots back", || {
        limiter.in_flight(key) == 0
    })
    .await;
    created(
        h2_request(&client, create_flow("same connection")).await,
        "same connection",
    );

    // A whole connection dropped with streams mid-body: same.
    let doomed = h2_client(addr).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(h2_open(&doomed, 100, br#"{"action":"create_flow","#).await);
    }
    eventually("the doomed streams hold their slots", || {
        limiter.in_flight(key) == 4
    })
    .await;
    drop((doomed, open));
    eventually("a dropped connection gave its slots back", || {
        limiter.in_flight(key) == 0
    })
    .await;

    // A burst of streams opened and reset at once (the "rapid reset" pattern), bounded, from
    // another address so that its slots cannot be mistaken for the ones above: the server may end
    // that connection, but it keeps serving others.
    let burst = h2_client_from(addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))).await;
    for _ in 0..200 {
        let Ok(ready) = burst.clone().ready().await else {
            break;
        };
        let mut ready = ready;
        let request = Request::post(format!("http://localhost{PATH}"))
            .header("content-type", "application/json")
            .header("authorization", bearer())
            .header("content-length", 100)
            .body(())
            .unwrap();
        let Ok((_, mut body)) = ready.send_request(request, false) else {
            break;
        };
        let _ = body.send_data(Bytes::from_static(b"{"), false);
        body.send_reset(h2::Reason::CANCEL);
    }
    drop(burst);

    let fresh = h2_client(addr).await;
    created(
        h2_request(&fresh, create_flow("new connection")).await,
        "new connection",
    );
    created(
        h2_request(&client, create_flow("old connection")).await,
        "old connection",
    );
    assert_eq!(pipeline.store().flow_count(), 3, "no partial body acted on");
    eventually("no stream left a slot behind, the burst's included", || {
        limiter.tracked_keys() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_limiter_refuses_new_keys_beyond_its_cap_and_forgets_finished_ones() {
    const CAP: usize = 16;
    let mut limits = roomy();
    limits.in_flight.max_tracked_keys = CAP;
    let (server, pipeline) = start(limits, ServeOptions::default()).await;
    let addr = server.addr;
    let limiter = pipeline.in_flight_limiter().clone();

    // CAP clients, each with a request stuck mid-body.
    let body = create_flow("held");
    let (first, rest) = body.as_bytes().split_at(10);
    let mut held = Vec::new();
    for n in 0..CAP {
        let mut stream = connect_from(addr, source(30, n)).await;
        stream
            .write_all(&stalled_body(body.len(), first))
            .await
            .unwrap();
        held.push(stream);
    }
    eventually("every held request has a slot", || {
        limiter.tracked_keys() == CAP
    })
    .await;

    // Twice as many new clients are refused at once (fail closed), and add no key.
    let refused = flood(addr, 31, 2 * CAP, &authorised(&create_flow("refused"))).await;
    assert_eq!(
        refused,
        BTreeMap::from([((429, "Too Many Requests".to_owned()), 2 * CAP)])
    );
    assert_eq!(limiter.tracked_keys(), CAP);

    // The held requests finish; their keys are forgotten and new clients get in.
    for stream in &mut held {
        stream.write_all(rest).await.unwrap();
        assert_created(&read_response(stream).await, "held");
    }
    eventually("finished requests are forgotten", || {
        limiter.tracked_keys() == 0
    })
    .await;
    let admitted = flood(addr, 31, 2 * CAP, &authorised(LIST_FLOWS)).await;
    assert_eq!(admitted.len(), 1, "{admitted:?}");
    assert_eq!(admitted.values().sum::<usize>(), 2 * CAP);
    assert_eq!(admitted.keys().next().unwrap().0, 200, "{admitted:?}");
    assert_eq!(pipeline.store().flow_count(), CAP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_twenty_thousand_addresses_leaves_every_limiter_bounded() {
    let (gateway, _) = Gateway::embedded(Secret::new(SECRET).unwrap());
    let server = serve_with(gateway.router(), ServeOptions::default()).await;
    let addr = server.addr;
    let pipeline = gateway.pipeline();
    let path = format!("/plugins/webhooks/{DEFAULT_ROUTE_ID}");
    let cap = pipeline.limits().rate_limit.max_tracked_keys;
    assert_eq!(cap, 4_096);

    let tally = flood(addr, 40, FLOOD_ADDRESSES, &authorised_to(&path, LIST_FLOWS)).await;
    let listed =
        json!({"ok": true, "routeId": DEFAULT_ROUTE_ID, "result": {"flows": []}}).to_string();
    assert_eq!(tally, BTreeMap::from([((200, listed), FLOOD_ADDRESSES)]));

    // Every address got a rate-limit window; the limiter kept the most recent ones only. With
    // 20,000 keys hashed over its shards, every shard is full: exactly the cap, never more.
    assert_eq!(pipeline.rate_limiter().tracked_keys(), cap);
    let in_flight = pipeline.in_flight_limiter();
    eventually("no request is in flight", || in_flight.tracked_keys() == 0).await;
    assert_eq!(
        pipeline.lockout().tracked_ips(),
        0,
        "no failed authentication"
    );

    let served = raw(addr, &authorised_to(&path, &create_flow("after the flood"))).await;
    assert_created(&served, "after the flood");
    assert_eq!(pipeline.store().as_memory().unwrap().flow_count(), 1);
    assert_eq!(pipeline.rate_limiter().tracked_keys(), cap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_secrets_keeps_the_lockout_bounded_and_locked_clients_locked() {
    let (gateway, _) = Gateway::embedded(Secret::new(SECRET).unwrap());
    let server = serve_with(gateway.router(), ServeOptions::default()).await;
    let addr = server.addr;
    let pipeline = gateway.pipeline();
    let lockout = pipeline.lockout();
    let path = format!("/plugins/webhooks/{DEFAULT_ROUTE_ID}");
    let wrong = {
        let body = LIST_FLOWS;
        post_bytes(
            &path,
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer guess"),
            ],
            body.as_bytes(),
        )
    };
    let right = authorised_to(&path, LIST_FLOWS);

    // Eight brute-forcers: 20 failures each lock them out, and then even the right secret gets
    // 429 with Retry-After.
    const LOCKED: usize = 8;
    for n in 0..LOCKED {
        let ip = source(50, n);
        for attempt in 0..20 {
            let mut stream = connect_from(addr, ip).await;
            stream.write_all(&wrong).await.unwrap();
            let response = read_response(&mut stream).await;
            assert_text(&response, 401, "unauthorized");
            let _ = attempt;
        }
        let mut stream = connect_from(addr, ip).await;
        stream.write_all(&right).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_text(&response, 429, "Too Many Requests");
        assert_eq!(response.header("retry-after"), Some("60"));
    }

    // 20,000 addresses guess once each: each is one failure short of nothing, so each gets 401.
    let tally = flood(addr, 51, FLOOD_ADDRESSES, &wrong).await;
    assert_eq!(
        tally,
        BTreeMap::from([((401, "unauthorized".to_owned()), FLOOD_ADDRESSES)])
    );

    // The lockout tracked them in bounded memory: full, never over its cap.
    let cap = lockout.config().max_tracked_ips;
    assert_eq!(cap, 4_096);
    assert_eq!(lockout.tracked_ips(), cap);
    assert!(
        pipeline.rate_limiter().tracked_keys() <= pipeline.limits().rate_limit.max_tracked_keys
    );

    // Making room evicted guessers, not the locked-out brute-forcers.
    for n in 0..LOCKED {
        let ip = source(50, n);
        assert!(lockout.is_locked(ip), "{ip} was let off by the flood");
        let mut stream = connect_from(addr, ip).await;
        stream.write_all(&right).await.unwrap();
        assert_text(&read_response(&mut stream).await, 429, "Too Many Requests");
    }

    // A legitimate client elsewhere is served throughout.
    let served = raw(addr, &authorised_to(&path, &create_flow("legitimate"))).await;
    assert_created(&served, "legitimate");
    assert_eq!(pipeline.store().as_memory().unwrap().flow_count(), 1);
}
