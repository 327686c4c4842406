//! Header values through one route's whole pipeline, request after request (SPEC §2).
//!
//! A fresh pipeline (tight limits so a short sequence reaches them: 4 requests per window, lockout
//! after 2 failures, 48-byte bodies; `10.0.0.0/8` and `::1` trusted as proxies) gets up to eight
//! requests built from the input: method, path and query, socket peer, and a list of
//! `Authorization`, `x-openclaw-webhook-secret`, `Content-Type`, `Content-Length` and
//! `X-Forwarded-For` fields whose values are well-formed, nearly so, or raw bytes; then a body in
//! one to three frames.
//!
//! An oracle written from SPEC §2 replays the same sequence: route lookup, method, the rate limit
//! per raw path and client IP (counting every request that reaches it), content type, the query
//! string, the lockout, the presented secret, `Content-Length` and the streamed length, then the
//! body. Every answer must have the oracle's status; a plain-text refusal its exact text and
//! headers (`Allow`, `Retry-After`, `WWW-Authenticate`, `Connection: close`); a JSON answer the
//! JSON content type. The client IP the crate computes (`TrustedProxies::client_ip`) must be the
//! oracle's for every request, since the rate limit and the lockout key on it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_webhooks::{
    WebhookPipeline,
    client_ip::TrustedProxies,
    clock::ManualClock,
    config::{Limits, ResolvedRoute, normalize_webhook_path},
    secret::Secret,
    taskflow::MemoryStore,
};

use super::action::{OWNER, decode, validate};
use super::{Input, Outcome, ready};

/// The route's secret.
pub const SECRET: &str = "s3cret-Hx7";
const ROUTE_PATH: &str = "/hook";
const MAX_REQUESTS: u32 = 4;
const MAX_FAILURES: u32 = 2;
const MAX_BYTES: usize = 48;
const LIST_FLOWS: &[u8] = br#"{"action":"list_flows"}"#;

const AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;
const CONTENT_TYPE: HeaderName = http::header::CONTENT_TYPE;
const CONTENT_LENGTH: HeaderName = http::header::CONTENT_LENGTH;
const SECRET_HEADER: HeaderName = HeaderName::from_static("x-openclaw-webhook-secret");
const FORWARDED: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A request body of ready frames.
#[derive(Debug)]
pub struct Frames(pub VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }
}

/// One request of a sequence.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub uri: &'static str,
    pub peer: SocketAddr,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub frames: Vec<Bytes>,
}

impl Call {
    fn request(&self) -> Result<Request<Frames>, String> {
        let mut builder = Request::builder().method(self.method.clone()).uri(self.uri);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let mut request = builder
            .body(Frames(self.frames.iter().cloned().collect()))
            .map_err(|e| e.to_string())?;
        request.extensions_mut().insert(self.peer);
        Ok(request)
    }

    fn values(&self, name: &HeaderName) -> Vec<&HeaderValue> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    }

    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.values(name).first().map(|v| v.as_bytes())
    }
}

// ---------------------------------------------------------------------- generation

const PEERS: [&str; 6] = [
    "203.0.113.7:1000",
    "198.51.100.2:2000",
    "10.0.0.1:3000",
    "[::ffff:10.0.0.1]:4000",
    "[::1]:5000",
    "[2001:db8::1]:6000",
];

fn value(input: &mut Input<'_>, name: &HeaderName, body_len: usize) -> Vec<u8> {
    if input.below(5) == 0 {
        return input.bytes(24).to_vec();
    }
    let n = body_len;
    let pool: Vec<String> = match name.as_str() {
        "authorization" => vec![
            format!("Bearer {SECRET}"),
            format!("  bEaReR \t{SECRET}  "),
            "Bearer".into(),
            "Bearer ".into(),
            format!("Bearer\t{SECRET}"),
            format!("Basic {SECRET}"),
            format!("Bearer {SECRET}x"),
            "Bearer wrong".into(),
        ],
        "x-openclaw-webhook-secret" => vec![
            SECRET.into(),
            format!(" {SECRET}\t"),
            String::new(),
            "wrong".into(),
            SECRET.to_uppercase(),
        ],
        "content-type" => vec![
            "application/json".into(),
            "Application/JSON ; charset=utf-8".into(),
            "application/vnd.hook+json".into(),
            "text/plain".into(),
            "+json".into(),
            "application/json5".into(),
            "; application/json".into(),
        ],
        "content-length" => vec![
            n.to_string(),
            format!("{n}, {n}"),
            format!("{n},{}", n + 1),
            (n + 1).to_string(),
            n.saturating_sub(1).to_string(),
            format!("+{n}"),
            format!("0{n}"),
            (MAX_BYTES + 1).to_string(),
            "18446744073709551616".into(),
            String::new(),
            format!("{n},"),
            format!(" {n}\t"),
        ],
        _ => vec![
            "198.51.100.9".into(),
            "10.0.0.7, 203.0.113.50".into(),
            "203.0.113.50, 10.0.0.7".into(),
            "garbage, 10.1.1.1".into(),
            "[2001:db8::5]:443".into(),
            "::ffff:10.0.0.3".into(),
            "10.0.0.4".into(),
            " , ,198.51.100.1:80".into(),
        ],
    };
    input.pick(&pool).clone().into_bytes()
}

fn call(input: &mut Input<'_>) -> Call {
    let method = match input.below(12) {
        0 => input
            .pick(&[Method::GET, Method::PUT, Method::HEAD, Method::PATCH])
            .clone(),
        1 => Method::from_bytes(b"FOO").unwrap_or(Method::GET),
        _ => Method::POST,
    };
    let uri = match input.below(4) {
        0 => *input.pick(&[
            "/hook/",
            "/hook?token=x",
            "/hook?a=1&SECRET",
            "/hook?tokens=1&x=secret",
            "/other",
            "/hook//",
            "/HOOK",
            "/hook?token",
        ]),
        _ => ROUTE_PATH,
    };
    let peer = input
        .pick(&PEERS)
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1)));
    let body: Vec<u8> = match input.below(8) {
        0 => Vec::new(),
        1 => b"{".to_vec(),
        2 => b"[]".to_vec(),
        3 => input.bytes(MAX_BYTES + 8).to_vec(),
        4 => {
            let mut big = LIST_FLOWS.to_vec();
            big.resize(MAX_BYTES + 1, b' ');
            big
        }
        _ => LIST_FLOWS.to_vec(),
    };
    let mut frames = Vec::new();
    let mut rest = &body[..];
    for _ in 0..input.below(3) {
        let (head, tail) = rest.split_at(input.below(rest.len() + 1));
        frames.push(Bytes::copy_from_slice(head));
        rest = tail;
    }
    frames.push(Bytes::copy_from_slice(rest));

    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let base = [
        (CONTENT_TYPE, "application/json".to_owned()),
        (AUTHORIZATION, format!("Bearer {SECRET}")),
        (CONTENT_LENGTH, body.len().to_string()),
    ];
    for (name, value) in base {
        if input.chance(6) {
            headers.push((name, HeaderValue::from_str(&value).expect("a valid header")));
        }
    }
    for _ in 0..input.below(5) {
        let name = input
            .pick(&[
                AUTHORIZATION,
                SECRET_HEADER,
                CONTENT_TYPE,
                CONTENT_LENGTH,
                FORWARDED,
            ])
            .clone();
        let bytes = value(input, &name, body.len());
        // Values a server would never deliver (control characters) are left out.
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let at = input.below(headers.len() + 1);
            headers.insert(at, (name, value));
        }
    }
    Call {
        method,
        uri,
        peer,
        headers,
        frames,
    }
}

/// A sequence of one to eight requests from the input.
pub fn calls(data: &[u8]) -> Vec<Call> {
    let mut input = Input::new(data);
    let n = input.below(8) + 1;
    (0..n).map(|_| call(&mut input)).collect()
}

// ---------------------------------------------------------------------- the oracle

fn trusted(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// SPEC §2.3: the peer, unless it is a trusted proxy; then `X-Forwarded-For` right to left, the
/// first address that is not trusted (the walk stops at an entry that is not an address, as the
/// crate documents; all trusted: the leftmost).
fn client_ip(call: &Call) -> IpAddr {
    let peer = call.peer.ip().to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let values = call.values(&FORWARDED);
    for value in values.into_iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for hop in text.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
            let ip = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()));
            let Ok(ip) = ip else {
                return client;
            };
            client = ip.to_canonical();
            if !trusted(client) {
                return client;
            }
        }
    }
    client
}

/// SPEC §2.2: `Authorization: Bearer …` decides alone when present, else the secret header.
fn presented(call: &Call) -> Vec<u8> {
    if let Some(auth) = call.first(&AUTHORIZATION) {
        let auth = auth.trim_ascii();
        if auth.len() >= 7 && auth[..7].eq_ignore_ascii_case(b"bearer ") {
            return auth[7..].trim_ascii().to_vec();
        }
    }
    call.first(&SECRET_HEADER)
        .map(|v| v.trim_ascii().to_vec())
        .unwrap_or_default()
}

fn is_json_type(value: &[u8]) -> bool {
    let essence = value
        .split(|b| *b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii();
    let lower = essence.to_ascii_lowercase();
    lower == b"application/json" || (lower.len() > 5 && lower.ends_with(b"+json"))
}

/// RFC 9110 §8.6 as the crate documents it: every element of every field `1*DIGIT` (spaces and
/// tabs around list elements allowed), all equal. `Err` is `400`.
fn declared_length(call: &Call) -> Result<Option<u64>, ()> {
    let mut agreed = None;
    for value in call.values(&CONTENT_LENGTH) {
        for element in value.as_bytes().split(|b| *b == b',') {
            let element = std::str::from_utf8(element).map_err(|_| ())?;
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() || !element.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = element.parse().map_err(|_| ())?;
            if agreed.is_some_and(|a| a != n) {
                return Err(());
            }
            agreed = Some(n);
        }
    }
    Ok(agreed)
}

/// What the oracle expects of one answer.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    /// A plain-text refusal: status and exact text.
    Plain(u16, &'static str),
    /// The action service answered (JSON): `200` for `list_flows`, else any of these statuses.
    Json(&'static [u16]),
}

#[derive(Default)]
struct Oracle {
    rate: HashMap<(String, IpAddr), u32>,
    failures: HashMap<IpAddr, u32>,
    locked: HashSet<IpAddr>,
}

impl Oracle {
    fn answer(&mut self, call: &Call) -> Want {
        let (path, query) = call.uri.split_once('?').unwrap_or((call.uri, ""));
        if normalize_webhook_path(path) != ROUTE_PATH {
            return Want::Plain(404, "Not Found");
        }
        if call.method != Method::POST {
            return Want::Plain(405, "Method Not Allowed");
        }
        let client = client_ip(call);
        let count = self.rate.entry((path.to_owned(), client)).or_default();
        *count += 1;
        if *count > MAX_REQUESTS {
            return Want::Plain(429, "Too Many Requests");
        }
        if !call.first(&CONTENT_TYPE).is_some_and(is_json_type) {
            return Want::Plain(415, "Unsupported Media Type");
        }
        let in_query = query.split('&').any(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            name.eq_ignore_ascii_case("token") || name.eq_ignore_ascii_case("secret")
        });
        if in_query {
            return Want::Plain(400, "secret must not be sent in the query string");
        }
        if self.locked.contains(&client) {
            return Want::Plain(429, "Too Many Requests");
        }
        let presented = presented(call);
        if presented.is_empty() || presented != SECRET.as_bytes() {
            let failures = self.failures.entry(client).or_default();
            *failures += 1;
            if *failures >= MAX_FAILURES {
                self.locked.insert(client);
            }
            return Want::Plain(401, "unauthorized");
        }
        self.failures.remove(&client);
        let declared = match declared_length(call) {
            Err(()) => return Want::Plain(400, "invalid Content-Length"),
            Ok(Some(n)) if n > MAX_BYTES as u64 => return Want::Plain(413, "Payload too large"),
            Ok(declared) => declared,
        };
        let mut total = 0u64;
        for frame in &call.frames {
            total += frame.len() as u64;
            if total > MAX_BYTES as u64 {
                return Want::Plain(413, "Payload too large");
            }
            if declared.is_some_and(|d| total > d) {
                return Want::Plain(400, "invalid Content-Length");
            }
        }
        if declared.is_some_and(|d| total != d) {
            return Want::Plain(400, "invalid Content-Length");
        }
        let body: Vec<u8> = call.frames.concat();
        match decode(&body) {
            None => Want::Plain(400, "invalid request body"),
            Some(_) if body == LIST_FLOWS => Want::Json(&[200]),
            Some(value) if validate(&value).is_err() => Want::Json(&[400]),
            // Any valid action against an empty store.
            Some(_) => Want::Json(&[200, 403, 404]),
        }
    }
}

// ---------------------------------------------------------------------- the check

fn header<'a>(response: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Runs the sequence through a fresh pipeline and compares every answer with the oracle's.
pub fn check_calls(calls: &[Call]) -> Outcome {
    let mut limits = Limits::default();
    limits.rate_limit.max_requests = MAX_REQUESTS;
    limits.auth_failures.max_failures = MAX_FAILURES;
    limits.body.max_bytes = MAX_BYTES;
    limits.trusted_proxies =
        TrustedProxies::parse(["10.0.0.0/8", "::1"]).map_err(|e| e.to_string())?;
    let proxies = limits.trusted_proxies.clone();
    let pipeline =
        WebhookPipeline::with_clock(MemoryStore::new(), limits, ManualClock::new(1_000_000));
    let secret = Secret::new(SECRET).ok_or("empty secret")?;
    let route = ResolvedRoute::new("hook", OWNER, [secret]).with_path(ROUTE_PATH);
    let router = pipeline.router(&[route]);
    let mut oracle = Oracle::default();

    for (i, call) in calls.iter().enumerate() {
        let request = call.request()?;
        let ip = proxies.client_ip(&request);
        ensure!(
            ip == client_ip(call),
            "request {i}: client IP {ip}, expected {} for {call:?}",
            client_ip(call)
        );
        let want = oracle.answer(call);
        let response = ready(router.clone().oneshot(request))?.unwrap_or_else(|e| match e {});
        let (parts, body) = response.into_parts();
        let bytes = ready(body.collect())?
            .map_err(|_| format!("request {i}: the answer's body failed"))?
            .to_bytes();
        let status = parts.status.as_u16();
        let context = || format!("request {i}: {call:?}\nanswer {status} {bytes:?}");
        match want {
            Want::Plain(code, text) => {
                ensure!(
                    status == code && bytes == text.as_bytes(),
                    "{}\nexpected {code} {text:?}",
                    context()
                );
                ensure!(
                    header(&parts, "content-type") == Some("text/plain; charset=utf-8"),
                    "{}: plain refusal without the text content type",
                    context()
                );
                let need = |name: &str, value: &str| header(&parts, name) == Some(value);
                match code {
                    405 => ensure!(need("allow", "POST"), "{}: no Allow", context()),
                    401 => ensure!(
                        need("www-authenticate", "Bearer"),
                        "{}: no WWW-Authenticate",
                        context()
                    ),
                    429 => ensure!(
                        header(&parts, "retry-after")
                            .and_then(|v| v.parse::<u64>().ok())
                            .is_some_and(|s| s >= 1),
                        "{}: no Retry-After",
                        context()
                    ),
                    413 => ensure!(need("connection", "close"), "{}: no Connection", context()),
                    400 if text == "invalid Content-Length" => {
                        ensure!(need("connection", "close"), "{}: no Connection", context())
                    }
                    _ => {}
                }
            }
            Want::Json(statuses) => {
                ensure!(
                    statuses.contains(&status),
                    "{}\nexpected one of {statuses:?}",
                    context()
                );
                ensure!(
                    header(&parts, "content-type") == Some("application/json; charset=utf-8"),
                    "{}: JSON answer without the JSON content type",
                    context()
                );
                ensure!(
                    serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                    "{}: the answer is not JSON",
                    context()
                );
            }
        }
    }
    Ok(())
}

/// One check from raw bytes: a sequence from `data`, the oracle.
pub fn check(data: &[u8]) -> Outcome {
    check_calls(&calls(data))
}
