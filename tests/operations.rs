//! Issue 11, making the gateway operable: health and readiness, metrics on their own listener, the
//! access log, the connection cap flag and a real command line, each driven through the built
//! gateway where an operator would meet it.

mod support;

use tower_webhooks::WebhooksConfig;

#[test]
fn a_route_at_a_health_path_is_a_config_error_naming_its_path_key() {
    for (path, reserved) in [
        ("/healthz", "/healthz"),
        ("readyz/", "/readyz"),
        (" /healthz ", "/healthz"),
    ] {
        let text = format!(
            r#"{{ routes: {{ ok: {{ sessionKey: "agent:main:main", secret: "s" }},
                             probe: {{ path: "{path}", sessionKey: "agent:main:main", secret: "s" }} }} }}"#
        );
        let error = WebhooksConfig::from_json5(&text).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "webhooks.routes.probe.path: {reserved} is answered by the health check and \
                 cannot be a route"
            ),
            "path {path:?}"
        );
    }
    // Near misses are ordinary routes.
    for path in ["/healthz/x", "/Healthz", "/plugins/webhooks/healthz"] {
        let text = format!(
            r#"{{ routes: {{ probe: {{ path: "{path}", sessionKey: "agent:main:main", secret: "s" }} }} }}"#
        );
        assert!(WebhooksConfig::from_json5(&text).is_ok(), "{path}");
    }
}

#[test]
fn metrics_listen_is_read_from_the_plugin_config_and_checked() {
    let config =
        WebhooksConfig::from_json5(r#"{ metrics: { listen: "127.0.0.1:9464" } }"#).unwrap();
    assert_eq!(
        config.metrics().listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let whole = WebhooksConfig::from_json5(
        r#"{ plugins: { entries: { webhooks: { config: { metrics: { listen: "[::1]:9464" } } } } } }"#,
    )
    .unwrap();
    assert_eq!(whole.metrics().listen, Some("[::1]:9464".parse().unwrap()));
    assert_eq!(
        WebhooksConfig::from_json5("{}").unwrap().metrics().listen,
        None
    );
    for (text, error) in [
        (
            r#"{ metrics: { listen: "localhost" } }"#,
            "webhooks.metrics.listen: must be an address like 127.0.0.1:9464",
        ),
        (
            r#"{ metrics: { listen: 9464 } }"#,
            "webhooks.metrics.listen: must be a string",
        ),
        (
            r#"{ metrics: { port: 1 } }"#,
            "webhooks.metrics.port: unknown key",
        ),
        (
            r#"{ metrics: true }"#,
            "webhooks.metrics: must be an object",
        ),
    ] {
        assert_eq!(
            WebhooksConfig::from_json5(text).unwrap_err().to_string(),
            error,
            "{text}"
        );
    }
}

// ---- The built gateway ----------------------------------------------------------------------

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::gateway_process::{Subprocess, run_to_exit};
use support::{RawResponse, connect, raw, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Values that must never reach a log line: each one distinctive enough to find anywhere.
const SECRET: &str = "ops-secret-5f1c0a2e9b";
const WRONG_SECRET: &str = "ops-wrong-secret-77d1";
const SESSION_KEY: &str = "agent:ops:session-8e4a21";
const GOAL: &str = "ops-goal-text-3c9b";
const BODY: &str = "ops-not-json-body-b71e";
const QUERY: &str = "ops-query-token-1d6f";

/// A config file in a fresh directory, removed on drop.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-webhooks-operations-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("webhooks.json5");
        std::fs::write(&path, text).unwrap();
        Self { dir, path }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One route per outcome, so no route spends another's rate-limit budget (3 per raw path).
const SCENARIO_ROUTES: [&str; 12] = [
    "create", "missing", "method", "media", "unauth", "query", "big", "badjson", "schema",
    "limited", "held", "locked",
];

fn scenario_config() -> String {
    let routes: Vec<String> = SCENARIO_ROUTES
        .iter()
        .map(|id| format!(r#"{id}: {{ sessionKey: "{SESSION_KEY}", secret: "{SECRET}" }},"#))
        .collect();
    format!(
        "{{ routes: {{ {} }}, limits: {{ rateLimit: {{ maxRequests: 3 }}, inFlight: {{ maxPerKey: 1 }}, \
         body: {{ maxBytes: 1024, timeoutMs: 3000 }}, authFailures: {{ max: 2 }} }} }}",
        routes.join(" ")
    )
}

fn post(route: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    support::post_bytes(
        &format!("/plugins/webhooks/{route}"),
        headers,
        body.as_bytes(),
    )
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn bearer(secret: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {secret}"))
}

/// What one request should be logged and counted as: method, route, status, reason, action, code.
type Expected = (
    &'static str,
    &'static str,
    u16,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

/// Drives one request of every outcome the gateway can produce over a socket, asserting each
/// status, and returns what the access log and the metrics must show for them. Probes are sent
/// too; they are neither logged nor counted.
async fn drive_every_outcome(addr: SocketAddr) -> Vec<Expected> {
    let auth = bearer(SECRET);
    let auth = (auth.0, auth.1.as_str());
    let mut expected: Vec<Expected> = Vec::new();
    let mut expect = |response: RawResponse, e: Expected| {
        assert_eq!(response.status, e.2, "{e:?}: {}", response.text());
        expected.push(e);
    };

    let create = format!(r#"{{"action":"create_flow","goal":"{GOAL}"}}"#);
    let r = raw(addr, &post("create", &[JSON, auth], &create)).await;
    expect(
        r,
        ("POST", "create", 200, None, Some("create_flow"), Some("ok")),
    );

    let missing = r#"{"action":"set_waiting","flowId":"no-such-flow","expectedRevision":0}"#;
    let r = raw(addr, &post("missing", &[JSON, auth], missing)).await;
    let not_found = Some("not_found");
    expect(
        r,
        ("POST", "missing", 404, None, Some("set_waiting"), not_found),
    );

    let get = b"GET /plugins/webhooks/method HTTP/1.1\r\nhost: t\r\n\r\n";
    let r = raw(addr, get).await;
    expect(r, ("GET", "method", 405, Some("method"), None, None));

    let text = ("content-type", "text/plain");
    let r = raw(addr, &post("media", &[text, auth], &create)).await;
    expect(r, ("POST", "media", 415, Some("media_type"), None, None));

    let wrong = bearer(WRONG_SECRET);
    let r = raw(addr, &post("unauth", &[JSON, (wrong.0, &wrong.1)], &create)).await;
    expect(r, ("POST", "unauth", 401, Some("unauthorized"), None, None));

    let in_query = support::post_bytes(
        &format!("/plugins/webhooks/query?token={QUERY}"),
        &[JSON, auth],
        create.as_bytes(),
    );
    let r = raw(addr, &in_query).await;
    expect(
        r,
        ("POST", "query", 400, Some("invalid_request"), None, None),
    );

    let r = raw(
        addr,
        &post("big", &[JSON, auth, ("content-length", "2048")], ""),
    )
    .await;
    expect(
        r,
        ("POST", "big", 413, Some("payload_too_large"), None, None),
    );

    let r = raw(addr, &post("badjson", &[JSON, auth], BODY)).await;
    expect(
        r,
        ("POST", "badjson", 400, Some("invalid_body"), None, None),
    );

    let r = raw(
        addr,
        &post("schema", &[JSON, auth], r#"{"action":"get_flow"}"#),
    )
    .await;
    expect(
        r,
        ("POST", "schema", 400, Some("invalid_request"), None, None),
    );

    // Rejected requests spend the window too: the fourth is over the limit of 3.
    for _ in 0..3 {
        let r = raw(addr, &post("limited", &[text, auth], &create)).await;
        expect(r, ("POST", "limited", 415, Some("media_type"), None, None));
    }
    let r = raw(addr, &post("limited", &[text, auth], &create)).await;
    expect(
        r,
        ("POST", "limited", 429, Some("rate_limited"), None, None),
    );

    // One request holds the route's only in-flight slot while its body never comes: `100 Continue`
    // says the body is being read, so the slot is taken. The next one is refused; the first one
    // then runs out of body time.
    let mut held = connect(addr).await;
    held.write_all(&post(
        "held",
        &[
            JSON,
            auth,
            ("expect", "100-continue"),
            ("content-length", "50"),
        ],
        "",
    ))
    .await
    .unwrap();
    let mut continued = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !continued.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(held.read(&mut byte).await.unwrap(), 1, "closed before 100");
            continued.push(byte[0]);
        }
    })
    .await
    .expect("no 100 Continue within 10 s");
    assert!(continued.starts_with(b"HTTP/1.1 100"), "{continued:?}");
    let r = raw(addr, &post("held", &[JSON, auth], &create)).await;
    expect(r, ("POST", "held", 429, Some("in_flight"), None, None));
    let r = read_response(&mut held).await;
    expect(r, ("POST", "held", 408, Some("body_timeout"), None, None));

    let r = raw(
        addr,
        format!("GET /nowhere?secret={QUERY} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes(),
    )
    .await;
    expect(r, ("GET", "", 404, None, None, None));

    // Last, as the lockout holds this client on every route: two failures in a row (a success, on
    // `big` and later, reset the count of `unauth`'s), then the right secret is refused.
    for _ in 0..2 {
        let r = raw(addr, &post("locked", &[JSON, (wrong.0, &wrong.1)], &create)).await;
        expect(r, ("POST", "locked", 401, Some("unauthorized"), None, None));
    }
    let r = raw(addr, &post("locked", &[JSON, auth], &create)).await;
    assert!(r.header("retry-after").is_some(), "{r:?}");
    expect(r, ("POST", "locked", 429, Some("locked_out"), None, None));

    let probe = raw(addr, b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!((probe.status, probe.text().as_str()), (200, "ok"));
    expected
}

fn gateway(config: &ConfigFile, extra: &[&str]) -> Subprocess {
    let mut command = Subprocess::command(Some(config.path()));
    // `info`, as an operator runs it: the access log is an `info` event.
    command.args(extra).env("RUST_LOG", "info");
    Subprocess::start(command)
}

fn field<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["fields"][name].as_str()
}

#[tokio::test]
async fn every_request_gets_one_access_log_event_with_every_field_and_no_secret() {
    let config = ConfigFile::new("access-log", &scenario_config());
    let mut gateway = gateway(&config, &[]);
    let addr = gateway.listening().await;
    let mut expected = drive_every_outcome(addr).await;
    let output = gateway.stop().await;

    let events: Vec<Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "tower_webhooks::access")
        .collect();
    let mut logged: Vec<Expected> = Vec::new();
    for event in &events {
        assert_eq!(event["level"], "INFO", "{event}");
        assert_eq!(field(event, "message"), Some("request"), "{event}");
        assert_eq!(field(event, "client_ip"), Some("127.0.0.1"), "{event}");
        let duration = event["fields"]["duration_ms"].as_f64();
        assert!(duration.is_some_and(|ms| ms >= 0.0), "{event}");
        let known: [&str; 10] = [
            "message",
            "method",
            "route",
            "status",
            "duration_ms",
            "client_ip",
            "reason",
            "action",
            "code",
            "",
        ];
        for name in event["fields"].as_object().unwrap().keys() {
            assert!(
                known.contains(&name.as_str()),
                "unexpected field {name} in {event}"
            );
        }
        let leak = |name: &str| -> &'static str {
            // Every field value comes from a fixed vocabulary or a route id: intern them.
            let value = field(event, name).unwrap_or_else(|| panic!("no {name} in {event}"));
            Box::leak(value.to_owned().into_boxed_str())
        };
        let optional = |name: &str| field(event, name).map(|v| &*Box::leak(v.into()));
        logged.push((
            leak("method"),
            leak("route"),
            event["fields"]["status"].as_u64().unwrap() as u16,
            optional("reason"),
            optional("action"),
            optional("code"),
        ));
    }
    expected.sort();
    logged.sort();
    assert_eq!(logged, expected, "access events:\n{events:#?}");

    for secret in [SECRET, WRONG_SECRET, SESSION_KEY, GOAL, BODY, QUERY] {
        assert!(
            !output.contains(secret),
            "{secret} in the output:\n{output}"
        );
    }
}

/// The text logs carry the same event, one line per request.
#[tokio::test]
async fn the_text_log_writes_the_access_event_too() {
    let config = ConfigFile::new("access-text", &scenario_config());
    let mut command = tokio::process::Command::new(support::gateway_process::gateway_binary());
    command
        .args(["--config", config.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .env("RUST_LOG", "info")
        .env_remove("LOG_FORMAT");
    let mut gateway = Subprocess::start(command);
    // In text the listening line is not JSON: read the port from it.
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = gateway.lines.recv().await.expect("gateway exited");
            if let Some(at) = line.find("listen=") {
                let rest = &line[at + "listen=".len()..];
                let addr = rest.split_whitespace().next().unwrap();
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
    })
    .await
    .expect("no listening line");
    let r = raw(
        addr,
        b"GET /plugins/webhooks/method HTTP/1.1\r\nhost: t\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405);
    let output = gateway.stop().await;
    let access: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("tower_webhooks::access"))
        .collect();
    assert_eq!(access.len(), 1, "{output}");
    for part in [
        "request",
        "method=\"GET\"",
        "route=\"method\"",
        "status=405",
        "duration_ms=",
        "client_ip=127.0.0.1",
        "reason=\"method\"",
    ] {
        assert!(access[0].contains(part), "{part} not in {}", access[0]);
    }
}

/// Every sample of an OpenMetrics text, by series (name and labels as written).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_every_outcome_on_their_own_listener_only() {
    let config = ConfigFile::new("metrics", &scenario_config());
    let mut gateway = gateway(&config, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics_event = gateway.wait_for("metrics listening").await;
    let metrics_addr: SocketAddr = field(&metrics_event, "listen").unwrap().parse().unwrap();
    let addr = gateway.listening().await;

    let on_webhook_port = raw(addr, b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(on_webhook_port.status, 404);

    let mut expected = drive_every_outcome(addr).await;
    expected.push(("GET", "", 404, None, None, None));
    let reload = gateway.reload().await;
    assert_eq!(field(&reload, "message"), Some("configuration reloaded"));

    let scrape = raw(metrics_addr, b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = scrape.text();
    let got = samples(&text);

    let mut want: HashMap<String, f64> = HashMap::new();
    for (_, route, status, reason, action, code) in &expected {
        *want
            .entry(format!(
                r#"webhook_requests_total{{route="{route}",status="{status}"}}"#
            ))
            .or_default() += 1.0;
        *want
            .entry(format!(
                r#"webhook_request_duration_seconds_count{{route="{route}"}}"#
            ))
            .or_default() += 1.0;
        if let Some(reason) = reason {
            *want
                .entry(format!(
                    r#"webhook_rejections_total{{route="{route}",reason="{reason}"}}"#
                ))
                .or_default() += 1.0;
        }
        if let (Some(action), Some(code)) = (action, code) {
            *want
                .entry(format!(
                    r#"taskflow_actions_total{{route="{route}",action="{action}",code="{code}"}}"#
                ))
                .or_default() += 1.0;
        }
    }
    want.insert(r#"webhook_config_reloads_total{result="ok"}"#.into(), 1.0);
    // Every path that reached the rate limiter is a key: all but the 405 (refused before it).
    want.insert(r#"webhook_tracked_keys{limiter="rate_limit"}"#.into(), 11.0);
    for (series, value) in &want {
        assert_eq!(got.get(series), Some(value), "{series} in\n{text}");
    }
    // Nothing else is counted: every counter and histogram count of the scrape is one we expect.
    for (series, value) in &got {
        let counted = series.starts_with("webhook_requests_total")
            || series.starts_with("webhook_rejections_total")
            || series.starts_with("taskflow_actions_total")
            || series.starts_with("webhook_request_duration_seconds_count")
            || series.starts_with("webhook_config_reloads_total");
        if counted {
            assert_eq!(
                want.get(series),
                Some(value),
                "unexpected {series} in\n{text}"
            );
        }
    }
    for limiter in ["in_flight", "lockout"] {
        let series = format!(r#"webhook_tracked_keys{{limiter="{limiter}"}}"#);
        assert!(got.contains_key(&series), "{series} in\n{text}");
    }
    for secret in [SECRET, SESSION_KEY, QUERY, "/plugins/webhooks", "/nowhere"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz_answer_before_route_lookup() {
    let config = ConfigFile::new("health", &scenario_config());
    let mut gateway = gateway(&config, &[]);
    let addr = gateway.listening().await;
    for (request, status, body) in [
        (&b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n"[..], 200, "ok"),
        (
            b"GET /readyz?verbose=1 HTTP/1.1\r\nhost: t\r\n\r\n",
            200,
            "ready",
        ),
    ] {
        let r = raw(addr, request).await;
        assert_eq!((r.status, r.text().as_str()), (status, body));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    // HEAD: the same head, no body.
    let mut stream = connect(addr).await;
    stream
        .write_all(b"HEAD /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let head = String::from_utf8(support::read_until_closed(&mut stream).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    for path in ["/healthz", "/readyz"] {
        let r = raw(addr, &support::post_bytes(path, &[JSON], b"{}")).await;
        assert_eq!((r.status, r.text().as_str()), (405, "Method Not Allowed"));
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // Not a probe: an ordinary unknown path.
    let r = raw(addr, b"GET /healthz/ HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(r.status, 404);
    gateway.stop().await;
}

#[tokio::test]
async fn readyz_is_503_while_no_route_is_served_and_names_no_secret() {
    let config = ConfigFile::new(
        "not-ready",
        &format!(
            r#"{{ routes: {{ only: {{ sessionKey: "{SESSION_KEY}",
                 secret: {{ source: "env", provider: "default", id: "OPS_TEST_UNSET_SECRET" }} }} }} }}"#
        ),
    );
    let mut command = Subprocess::command(Some(config.path()));
    command.env_remove("OPS_TEST_UNSET_SECRET");
    let mut gateway = Subprocess::start(command);
    let addr = gateway.listening().await;
    let r = raw(addr, b"GET /readyz HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "not ready: routes: no route is served")
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = raw(addr, b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    gateway.stop().await;
}

async fn run(args: &[&str]) -> (i32, String) {
    let mut command = tokio::process::Command::new(support::gateway_process::gateway_binary());
    command.args(args).env_remove("WEBHOOK_SECRET");
    let (status, output) = run_to_exit(command).await;
    (status.code().expect("exited, not killed"), output)
}

#[tokio::test]
async fn help_exits_0_and_lists_every_flag_with_its_default() {
    let (code, help) = run(&["--help"]).await;
    assert_eq!(code, 0, "{help}");
    for flag in [
        "--config <FILE>",
        "--listen <ADDR>",
        "[default: 127.0.0.1:18790]",
        "--log-format <FORMAT>",
        "[default: text, or json when LOG_FORMAT=json]",
        "--metrics-listen <ADDR>",
        "--max-connections <N>",
        "[default: 10000]",
        "--check-config",
        "--version",
        "WEBHOOK_SECRET",
        "RUST_LOG",
    ] {
        assert!(help.contains(flag), "{flag} not in\n{help}");
    }
}

#[tokio::test]
async fn version_exits_0_with_the_crate_version() {
    let (code, version) = run(&["--version"]).await;
    assert_eq!(code, 0, "{version}");
    assert_eq!(
        version.trim(),
        format!("gateway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn max_connections_takes_a_positive_number_and_defaults_to_10000() {
    for bad in ["0", "-1", "many"] {
        let (code, output) = run(&[&format!("--max-connections={bad}")]).await;
        assert_eq!(code, 2, "{bad}: {output}");
        assert!(output.contains("--max-connections"), "{output}");
    }
    let config = ConfigFile::new("max-connections", &scenario_config());
    let mut gateway = gateway(&config, &["--max-connections", "3"]);
    let listening = gateway.wait_for("gateway listening").await;
    assert_eq!(listening["fields"]["max_connections"], 3);
    gateway.stop().await;
    let mut gateway = gateway_default(&config);
    let listening = gateway.wait_for("gateway listening").await;
    assert_eq!(listening["fields"]["max_connections"], 10_000);
    gateway.stop().await;
}

/// The flag reaches the accept loop: with a cap of 1, a second client is not answered while the
/// first keeps its connection open, and is answered once it closes.
#[tokio::test]
async fn at_max_connections_the_gateway_answers_a_new_client_only_once_one_closes() {
    let config = ConfigFile::new("connection-cap", &scenario_config());
    let mut gateway = gateway(&config, &["--max-connections", "1"]);
    let addr = gateway.listening().await;
    let probe = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";

    let mut first = connect(addr).await;
    first.write_all(probe).await.unwrap();
    assert_eq!(read_response(&mut first).await.status, 200);
    // Kept alive: the gateway holds its one connection for it.
    let mut second = connect(addr).await;
    second.write_all(probe).await.unwrap();
    let mut byte = [0u8; 1];
    // A negative observation needs a window: nothing may arrive while the first is open.
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut byte)).await;
    assert!(early.is_err(), "answered beyond the cap: {early:?}");
    drop(first);
    let response = read_response(&mut second).await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    gateway.stop().await;
}

fn gateway_default(config: &ConfigFile) -> Subprocess {
    gateway(config, &[])
}

#[tokio::test]
async fn check_config_prints_each_route_and_the_backend_kinds_without_secrets() {
    let config = ConfigFile::new(
        "check",
        &format!(
            r#"{{ routes: {{
                 zap: {{ path: "hooks/zap/", sessionKey: "{SESSION_KEY}", secret: ["{SECRET}", "{WRONG_SECRET}"] }},
                 env: {{ sessionKey: "{SESSION_KEY}",
                         secret: {{ source: "env", provider: "default", id: "OPS_TEST_UNSET_SECRET" }} }},
                 off: {{ enabled: false, sessionKey: "{SESSION_KEY}", secret: "{SECRET}" }},
               }},
               metrics: {{ listen: "127.0.0.1:9464" }} }}"#
        ),
    );
    let path = config.path().to_str().unwrap();
    let (code, output) = run(&["--config", path, "--check-config"]).await;
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output,
        format!(
            "config {path}: ok\n\
             route zap: path /hooks/zap, auth secret (2 secrets), dispatch taskflow-actions\n\
             warning: [webhooks] skipping route env: could not resolve \
             plugins.entries.webhooks.config.routes.env.secret \
             (env:default:OPS_TEST_UNSET_SECRET): environment variable OPS_TEST_UNSET_SECRET is not set\n\
             store: memory\n\
             shared state: none\n\
             metrics: 127.0.0.1:9464\n"
        )
    );
    for secret in [SECRET, WRONG_SECRET, SESSION_KEY] {
        assert!(!output.contains(secret), "{secret} in\n{output}");
    }

    // The flag overrides the file, as it does when serving.
    let (code, output) = run(&[
        "--config",
        path,
        "--metrics-listen",
        "127.0.0.1:9999",
        "--check-config",
    ])
    .await;
    assert_eq!(code, 0, "{output}");
    assert!(output.ends_with("metrics: 127.0.0.1:9999\n"), "{output}");

    let (code, output) = run(&["--check-config"]).await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.starts_with(
            "embedded default: ok\n\
             route default: path /plugins/webhooks/default, auth secret (1 secret), dispatch taskflow-actions\n"
        ),
        "{output}"
    );
}

#[tokio::test]
async fn check_config_prints_the_error_and_exits_2() {
    let config = ConfigFile::new(
        "check-bad",
        &format!(
            r#"{{ routes: {{ probe: {{ path: "/readyz", sessionKey: "{SESSION_KEY}", secret: "{SECRET}" }} }} }}"#
        ),
    );
    let path = config.path().to_str().unwrap();
    let (code, output) = run(&["--config", path, "--check-config"]).await;
    assert_eq!(code, 2, "{output}");
    assert_eq!(
        output,
        "gateway: webhooks.routes.probe.path: /readyz is answered by the health check and \
         cannot be a route\n"
    );
    // And the same file does not start.
    let (code, output) = run(&["--config", path, "--listen", "127.0.0.1:0"]).await;
    assert_eq!(code, 2, "{output}");
}
