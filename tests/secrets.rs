//! Secrets never leak: not into logs, not through `Debug`/`Display`, not into responses; and no
//! response carries a route's session key or owner metadata.
//!
//! - The real `gateway` example runs as a subprocess with a config of inline, `env`, `file` and
//!   `exec` secrets; it is driven with wrong secrets (401), into the lockout (429), with secrets in
//!   the query string (400), with good requests, then reloaded (`SIGHUP`) onto unresolvable refs,
//!   onto a file with a syntax error on a secret's line, and onto a rotated secret. Its whole
//!   stdout and stderr (JSON logs at `trace`) and every response must hold no secret value, and no
//!   response a session key.
//! - In process, every configuration type, error, layer, service and builder built with known
//!   secrets is formatted with `{:?}`, `{:#?}` and `Display`; a `tracing` subscriber captures
//!   everything logged around requests full of failures, a reload included.
//! - Every action of SPEC §3, on success and failure paths, answers without the session key or
//!   owner metadata (SPEC §4).

mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use http::Request;
use serde_json::{Value, json};
use support::gateway_process::{Subprocess, gateway_binary, run_to_exit};
use support::{RawResponse, post_bytes, raw};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_webhooks::gateway::Gateway;
use tower_webhooks::{
    AuthLockout, BufferedBody, CancelHook, ChildCancel, ChildSessionPolicy, ConfigError, Limits,
    LockoutConfig, MemoryStore, MemoryStoreConfig, ResolvedRoute, Secret, SecretInput,
    SecretProviders, SecretRef, SecretSource, SharedSecretAuthConfig, SharedSecretAuthLayer,
    SystemClock, Task, TaskFlowActionService, TaskFlowRoute, WebhookPipeline, WebhooksConfig,
};

// Every configured secret value. Each is distinctive, so a leak of even a fragment shows.
const INLINE: &str = "sk-inline-5b1f0c9e27d4a8";
const ENV_VALUE: &str = "sk-env-93ad17f0b6c2e4";
const FILE_VALUE: &str = "sk-file-c4e8a2d917b05f";
const EXEC_VALUE: &str = "sk-exec-0e6b9d3a57f12c";
const MULTI: &str = "sk-multi-7a2c5e9f14b83d";
/// A credential an `exec` provider passes to its helper (say, a vault token).
const EXEC_TOKEN: &str = "vault-token-d92f6a1c3e7b05";
const INLINE_2: &str = "sk-inline2-2f8e4b6d0a9c31";
const ROTATED: &str = "sk-rotated-81c5f3a7e2d96b";
const SYNTAX: &str = "sk-syntax-6d0a2e8c4f1b97";
/// Content of secret files that must be refused (group-readable, not JSON).
const REFUSED_FILE: &str = "sk-refused-3e9b7d1f5a0c62";

const SECRETS: [&str; 10] = [
    INLINE,
    ENV_VALUE,
    FILE_VALUE,
    EXEC_VALUE,
    MULTI,
    EXEC_TOKEN,
    INLINE_2,
    ROTATED,
    SYNTAX,
    REFUSED_FILE,
];

const ENV_VAR: &str = "TOWER_WEBHOOKS_SECRETS_TEST_ENV";
const MISSING_ENV_VAR: &str = "TOWER_WEBHOOKS_SECRETS_TEST_MISSING";

const ROUTE_IDS: [&str; 5] = ["inline", "env", "file", "exec", "multi"];

fn session_key(route: &str) -> String {
    format!("agent:{route}:main")
}

/// Fails if `text` holds any secret, whole or a 10-byte fragment of it.
fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        let fragment = &secret[secret.len() - 10..];
        assert!(
            !text.contains(secret) && !text.contains(fragment),
            "{what} leaks {secret}:\n{text}"
        );
    }
}

// ---- files -------------------------------------------------------------------------------------

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tower-webhooks-secrets-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_mode(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    file.write_all(content.as_bytes()).unwrap();
}

/// Writes a file through a temporary name and a rename, so a reader never sees half of it.
fn replace_file(path: &Path, content: &str, mode: u32) {
    let staging = path.with_extension("staging");
    write_mode(&staging, content, mode);
    std::fs::rename(&staging, path).unwrap();
}

/// The secret files and helper programs every scenario uses.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        let fixture = Self { dir };
        fixture.set_file_secret(FILE_VALUE);
        // Refused: readable by group and others.
        write_mode(
            &fixture.path("shared.json"),
            &json!({"hooks": {"file": REFUSED_FILE}}).to_string(),
            0o644,
        );
        // Refused: not JSON, in json mode; the parse error must not quote it.
        write_mode(&fixture.path("raw.txt"), REFUSED_FILE, 0o600);
        // The good helper checks the credential it was given, then prints the secret.
        write_mode(
            &fixture.path("helper.sh"),
            &format!(
                "#!/bin/sh\n[ \"$TOKEN\" = \"{EXEC_TOKEN}\" ] || exit 4\n\
                 printf '{{\"protocolVersion\":1,\"values\":{{\"hook\":\"{EXEC_VALUE}\"}}}}'\n"
            ),
            0o700,
        );
        // Fails, after echoing a secret and its credential on stderr.
        write_mode(
            &fixture.path("fail.sh"),
            &format!("#!/bin/sh\necho \"{EXEC_VALUE} $TOKEN\" >&2\nexit 3\n"),
            0o700,
        );
        // Refuses the id with an error message that quotes a secret.
        write_mode(
            &fixture.path("denied.sh"),
            &format!(
                "#!/bin/sh\nprintf '{{\"protocolVersion\":1,\"values\":{{}},\
                 \"errors\":{{\"hook\":{{\"message\":\"denied: {EXEC_VALUE}\"}}}}}}'\n"
            ),
            0o700,
        );
        // Prints the secret, but not as JSON.
        write_mode(
            &fixture.path("garbled.sh"),
            &format!("#!/bin/sh\nprintf 'value={EXEC_VALUE}'\n"),
            0o700,
        );
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn set_file_secret(&self, value: &str) {
        replace_file(
            &self.path("secrets.json"),
            &json!({"hooks": {"file": value}}).to_string(),
            0o600,
        );
    }

    /// Every provider, good and bad, as a `secrets.providers` object.
    fn providers(&self) -> String {
        let p = |name: &str| self.path(name).display().to_string();
        format!(
            r#"{{
      vault: {{ source: "file", path: "{vault}" }},
      gone: {{ source: "file", path: "{gone}" }},
      shared: {{ source: "file", path: "{shared}" }},
      raw: {{ source: "file", path: "{raw}" }},
      helper: {{ source: "exec", command: "{helper}", env: {{ TOKEN: "{EXEC_TOKEN}" }} }},
      failing: {{ source: "exec", command: "{fail}", env: {{ TOKEN: "{EXEC_TOKEN}" }} }},
      denied: {{ source: "exec", command: "{denied}" }},
      garbled: {{ source: "exec", command: "{garbled}" }},
    }}"#,
            vault = p("secrets.json"),
            gone = p("missing.json"),
            shared = p("shared.json"),
            raw = p("raw.txt"),
            helper = p("helper.sh"),
            fail = p("fail.sh"),
            denied = p("denied.sh"),
            garbled = p("garbled.sh"),
        )
    }

    /// A config whose routes use the given `secret` values (JSON5 text), in `ROUTE_IDS` order.
    fn config(&self, secrets: [&str; 5]) -> String {
        let routes: Vec<String> = ROUTE_IDS
            .iter()
            .zip(secrets)
            .map(|(id, secret)| {
                format!(
                    "    {id}: {{ sessionKey: \"{}\", secret: {secret} }},",
                    session_key(id)
                )
            })
            .collect();
        format!(
            "{{\n  routes: {{\n{}\n  }},\n  limits: {{ authFailures: {{ max: 3 }}, trustedProxies: [\"127.0.0.1/32\"] }},\n  secrets: {{ providers: {} }},\n}}\n",
            routes.join("\n"),
            self.providers()
        )
    }

    /// Every route resolvable: inline, env, file, exec, and a list of inline + env.
    fn good_config(&self, inline: &str) -> String {
        let env = format!(r#"{{ source: "env", provider: "default", id: "{ENV_VAR}" }}"#);
        self.config([
            &format!("\"{inline}\""),
            &env,
            r#"{ source: "file", provider: "vault", id: "/hooks/file" }"#,
            r#"{ source: "exec", provider: "helper", id: "hook" }"#,
            &format!("[\"{MULTI}\", {env}]"),
        ])
    }

    /// Only `inline` resolves; every other route's ref fails a different way.
    fn broken_config(&self) -> String {
        self.config([
            &format!("\"{INLINE_2}\""),
            &format!(r#"{{ source: "env", provider: "default", id: "{MISSING_ENV_VAR}" }}"#),
            r#"{ source: "file", provider: "gone", id: "/hooks/file" }"#,
            r#"{ source: "exec", provider: "failing", id: "hook" }"#,
            &format!(
                r#"["{MULTI}", {{ source: "exec", provider: "denied", id: "hook" }}, {{ source: "file", provider: "shared", id: "/hooks/file" }}]"#
            ),
        ])
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gateway subprocess with this file's `env` secret set and its missing one unset.
fn gateway_command(config: Option<&Path>) -> tokio::process::Command {
    let mut command = Subprocess::command(config);
    command.env(ENV_VAR, ENV_VALUE).env_remove(MISSING_ENV_VAR);
    command
}

/// A client of the subprocess that keeps every response.
struct Driver {
    addr: SocketAddr,
    responses: Vec<RawResponse>,
}

impl Driver {
    /// POSTs `body` to `/plugins/webhooks/<route><query>` from client `client_ip` (a loopback
    /// address the gateway trusts the forwarding header for).
    async fn post(
        &mut self,
        route: &str,
        query: &str,
        client_ip: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> &RawResponse {
        let path = format!("/plugins/webhooks/{route}{query}");
        let mut all = vec![
            ("content-type", "application/json"),
            ("x-forwarded-for", client_ip),
        ];
        all.extend_from_slice(headers);
        let response = raw(self.addr, &post_bytes(&path, &all, body.as_bytes())).await;
        self.responses.push(response);
        self.responses.last().unwrap()
    }

    async fn bearer(&mut self, route: &str, client_ip: &str, secret: &str, body: Value) -> u16 {
        let auth = format!("Bearer {secret}");
        self.post(
            route,
            "",
            client_ip,
            &[("authorization", &auth)],
            &body.to_string(),
        )
        .await
        .status
    }

    /// Creates a flow, runs a task in it, reads and cancels it: every answer 200.
    async fn full_cycle(&mut self, route: &str, client_ip: &str, secret: &str) {
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str())];
        let created = self
            .post(
                route,
                "",
                client_ip,
                &headers,
                r#"{"action":"create_flow","goal":"leak hunt"}"#,
            )
            .await;
        assert_eq!(created.status, 200, "{route}: {}", created.text());
        let flow_id = created.json()["result"]["flow"]["flowId"]
            .as_str()
            .unwrap()
            .to_owned();
        for body in [
            json!({"action": "run_task", "flowId": flow_id, "runtime": "subagent", "task": "t",
                   "childSessionKey": format!("agent:{route}:worker")}),
            json!({"action": "get_flow", "flowId": flow_id}),
            json!({"action": "list_flows"}),
            json!({"action": "get_task_summary", "flowId": flow_id}),
            json!({"action": "cancel_flow", "flowId": flow_id}),
        ] {
            let response = self
                .post(route, "", client_ip, &headers, &body.to_string())
                .await;
            assert_eq!(response.status, 200, "{route} {body}: {}", response.text());
        }
    }
}

fn bytes_of(response: &RawResponse) -> String {
    let mut text = format!("{}\n", response.status);
    for (name, value) in &response.headers {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str(&response.text());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_never_logs_or_answers_a_secret() {
    tokio::task::spawn_blocking(gateway_binary).await.unwrap();
    let fixture = Fixture::new("gateway");
    let config = fixture.path("webhooks.json5");
    replace_file(&config, &fixture.good_config(INLINE), 0o600);

    let mut gateway = Subprocess::start(gateway_command(Some(&config)));
    let addr = gateway.listening().await;
    let mut driver = Driver {
        addr,
        responses: Vec::new(),
    };
    let list = json!({"action": "list_flows"});

    // Every route serves with its secret, from every source.
    let secret_of = [INLINE, ENV_VALUE, FILE_VALUE, EXEC_VALUE, MULTI];
    for (route, secret) in ROUTE_IDS.iter().zip(secret_of) {
        driver.full_cycle(route, "127.0.0.10", secret).await;
    }
    assert_eq!(
        driver
            .bearer("multi", "127.0.0.10", ENV_VALUE, list.clone())
            .await,
        200
    );

    // Wrong secrets, each from its own client so none is locked out yet: near misses of the real
    // ones, the other header, an empty bearer, none at all.
    for (n, (route, secret)) in ROUTE_IDS.iter().zip(secret_of).enumerate() {
        let ip = format!("127.0.1.{n}");
        for wrong in [format!("{secret}x"), secret[..secret.len() - 1].to_owned()] {
            assert_eq!(driver.bearer(route, &ip, &wrong, list.clone()).await, 401);
        }
        let wrong = format!("x{secret}");
        let response = driver
            .post(
                route,
                "",
                &format!("127.0.2.{n}"),
                &[("x-openclaw-webhook-secret", &wrong)],
                &list.to_string(),
            )
            .await;
        assert_eq!(
            (response.status, response.text().as_str()),
            (401, "unauthorized")
        );
    }
    let empty = driver
        .post(
            "inline",
            "",
            "127.0.2.20",
            &[("authorization", "Bearer  ")],
            "{}",
        )
        .await;
    assert_eq!(empty.status, 401);
    let none = driver.post("inline", "", "127.0.2.21", &[], "{}").await;
    assert_eq!(none.status, 401);

    // The lockout: three failures, then even the right secret is refused.
    for _ in 0..3 {
        assert_eq!(
            driver
                .bearer("file", "127.0.3.1", "guess-file-secret", list.clone())
                .await,
            401
        );
    }
    for (route, secret) in ROUTE_IDS.iter().zip(secret_of) {
        let auth = format!("Bearer {secret}");
        let locked = driver
            .post(route, "", "127.0.3.1", &[("authorization", &auth)], "{}")
            .await;
        assert_eq!(locked.status, 429, "{}", locked.text());
        assert!(locked.header("retry-after").is_some());
    }

    // A secret in the query string is refused even beside the right header.
    for (route, secret) in ROUTE_IDS.iter().zip(secret_of) {
        let auth = format!("Bearer {secret}");
        for query in [format!("?token={secret}"), format!("?a=1&secret={secret}")] {
            let refused = driver
                .post(
                    route,
                    &query,
                    "127.0.4.1",
                    &[("authorization", &auth)],
                    "{}",
                )
                .await;
            assert_eq!(
                (refused.status, refused.text().as_str()),
                (400, "secret must not be sent in the query string")
            );
        }
    }

    // Reload onto refs that do not resolve: only `inline` (with a new value) survives.
    replace_file(&config, &fixture.broken_config(), 0o600);
    let outcome = gateway.reload().await;
    assert_eq!(outcome["fields"]["message"], "configuration reloaded");
    assert_eq!(
        driver
            .bearer("inline", "127.0.5.1", INLINE_2, list.clone())
            .await,
        200
    );
    assert_eq!(
        driver
            .bearer("inline", "127.0.5.1", INLINE, list.clone())
            .await,
        401
    );
    for (route, secret) in ROUTE_IDS.iter().zip(secret_of).skip(1) {
        // Skipped routes reserve no path.
        let gone = driver
            .bearer(route, "127.0.5.2", secret, list.clone())
            .await;
        assert_eq!(gone, 404, "{route} still served");
    }

    // Reload onto a syntax error on a secret's own line: refused, the old table stays.
    let broken = fixture.broken_config().replace(
        &format!("\"{INLINE_2}\" }},"),
        &format!("\"{SYNTAX}\" ,, }},"),
    );
    assert!(broken.contains(SYNTAX));
    replace_file(&config, &broken, 0o600);
    let outcome = gateway.reload().await;
    assert!(
        outcome["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("reload failed, old routes kept: "),
        "{outcome}"
    );
    assert_eq!(
        driver
            .bearer("inline", "127.0.5.1", INLINE_2, list.clone())
            .await,
        200
    );

    // Rotation: the file now holds a new secret; everything resolves again.
    fixture.set_file_secret(ROTATED);
    replace_file(&config, &fixture.good_config(INLINE_2), 0o600);
    let outcome = gateway.reload().await;
    assert_eq!(outcome["fields"]["message"], "configuration reloaded");
    driver.full_cycle("file", "127.0.6.1", ROTATED).await;
    assert_eq!(
        driver
            .bearer("file", "127.0.6.2", FILE_VALUE, list.clone())
            .await,
        401
    );
    let rotated = [INLINE_2, ENV_VALUE, ROTATED, EXEC_VALUE, MULTI];
    for (route, secret) in ROUTE_IDS.iter().zip(rotated) {
        assert_eq!(
            driver
                .bearer(route, "127.0.6.1", secret, list.clone())
                .await,
            200
        );
    }

    let output = gateway.stop().await;

    // The capture did see the failures (so an empty log cannot pass for a clean one)...
    for expected in [
        "gateway listening",
        &format!(
            "skipping route env: could not resolve plugins.entries.webhooks.config.routes.env.secret (env:default:{MISSING_ENV_VAR})"
        ),
        "skipping route file:",
        "skipping route exec:",
        "skipping route multi:",
        "reload failed, old routes kept",
        "configuration reloaded",
        "all connections finished",
    ] {
        assert!(
            output.contains(expected),
            "{expected:?} not logged:\n{output}"
        );
    }
    // ...and holds no secret.
    assert_no_secret("gateway output", &output);
    assert!(driver.responses.len() > 80, "{}", driver.responses.len());
    for response in &driver.responses {
        let bytes = bytes_of(response);
        assert_no_secret("a response", &bytes);
        for route in ROUTE_IDS {
            assert!(
                !bytes.contains(&session_key(route)),
                "session key in a response:\n{bytes}"
            );
        }
    }
    eprintln!(
        "{} responses, {} bytes of gateway output checked",
        driver.responses.len(),
        output.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_names_no_secret_when_it_cannot_start_or_runs_the_default() {
    tokio::task::spawn_blocking(gateway_binary).await.unwrap();
    let fixture = Fixture::new("startup");

    // Configs it refuses to start with, a secret on the offending line or beside the offence.
    let good = fixture.good_config(INLINE);
    let refused = [
        good.replace(
            &format!("\"{INLINE}\" }},"),
            &format!("\"{INLINE}\" ,, }},"),
        ),
        good.replace(
            &format!("\"{INLINE}\" }},"),
            &format!("\"{INLINE}\", sekret: \"{SYNTAX}\" }},"),
        ),
        good.replace(
            "secret: [",
            &format!("path: \"/plugins/webhooks/inline\", secret: [\"{SYNTAX}\", "),
        ),
        good.replace(
            &format!("TOKEN: \"{EXEC_TOKEN}\""),
            &format!("TOKEN: \"{EXEC_TOKEN}\", BROKEN: 7"),
        ),
    ];
    for (n, text) in refused.iter().enumerate() {
        assert_ne!(text, &good, "case {n} changed nothing");
        let path = fixture.path(&format!("refused-{n}.json5"));
        write_mode(&path, text, 0o600);
        let (status, output) = run_to_exit(gateway_command(Some(&path))).await;
        assert_eq!(status.code(), Some(2), "case {n}: {output}");
        assert!(output.contains("gateway: "), "case {n}: {output}");
        assert_no_secret(&format!("startup failure {n}"), &output);
    }

    // The embedded default, its secret from WEBHOOK_SECRET: used, never printed.
    let mut command = gateway_command(None);
    command.env("WEBHOOK_SECRET", INLINE_2);
    let mut gateway = Subprocess::start(command);
    let addr = gateway.listening().await;
    let mut responses = Vec::new();
    for secret in [INLINE_2, INLINE, ""] {
        let auth = format!("Bearer {secret}");
        let response = raw(
            addr,
            &post_bytes(
                &format!("/plugins/webhooks/default?x={secret}"),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                br#"{"action":"create_flow","goal":"g"}"#,
            ),
        )
        .await;
        responses.push(response.status);
        assert_no_secret("a response", &bytes_of(&response));
        assert!(!bytes_of(&response).contains("agent:main:main"));
    }
    assert_eq!(responses, [200, 401, 401]);
    let output = gateway.stop().await;
    assert!(output.contains("serving route"), "{output}");
    assert_no_secret("embedded gateway output", &output);
}

// ---- in process: Debug and Display --------------------------------------------------------------

fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap()
}

/// Formats `value` every way it can be, and checks each rendering.
fn check_debug(what: &str, value: &dyn std::fmt::Debug) {
    assert_no_secret(what, &format!("{value:?}"));
    assert_no_secret(what, &format!("{value:#?}"));
}

fn check_display(what: &str, value: &dyn std::fmt::Display) {
    assert_no_secret(what, &value.to_string());
    assert_no_secret(what, &format!("{value:>10}"));
}

fn check_error(what: &str, error: &dyn std::error::Error) {
    check_display(what, &error);
    check_debug(what, &error);
    let mut source = error.source();
    while let Some(inner) = source {
        check_display(what, &inner);
        check_debug(what, &inner);
        source = inner.source();
    }
}

/// Config texts that fail to load, each with a secret somewhere in it.
fn failing_configs(fixture: &Fixture) -> Vec<String> {
    let route = |extra: &str| {
        format!(
            r#"{{ routes: {{ zap: {{ sessionKey: "agent:main:main", secret: "{INLINE}"{extra} }} }} }}"#
        )
    };
    vec![
        // Syntax errors on the secret's line, and around it.
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: "{INLINE}" ,, }} }} }}"#),
        format!("{{ routes: {{ zap: {{ sessionKey: \"s\", secret: \"{INLINE}\n }} }} }}"),
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: {INLINE} }} }} }}"#),
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: "{INLINE}\u12" }} }} }}"#),
        format!("{{\n  routes: {{\n    zap: {{ secret: '{INLINE}', sessionKey: 's' }}\n  }}\n"),
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: "{INLINE}\x4" }} }} }}"#),
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: "\uD800{INLINE}" }} }} }}"#),
        format!(r#"{{ routes: {{}}, limits: 1e999999, x: "{INLINE}" }}"#),
        format!(r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: "{INLINE}" }} }} }} {INLINE}"#),
        format!(r#"{{ "{INLINE}" }}"#),
        // Valid JSON5, invalid config: a secret next to, or in place of, what is wrong.
        route(&format!(r#", secrte: "{MULTI}""#)),
        route(&format!(r#", path: {{ value: "{MULTI}" }}"#)),
        route(&format!(r#", childSessions: "{MULTI}""#)),
        route(r#", enabled: "yes""#),
        format!(
            r#"{{ routes: {{ zap: {{ sessionKey: "{INLINE}", secret: ["{MULTI}", 42] }} }} }}"#
        ),
        format!(
            r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: {{ source: "vault", provider: "{INLINE}", id: "x" }} }} }} }}"#
        ),
        format!(
            r#"{{ routes: {{ zap: {{ sessionKey: "s", secret: {{ source: "env", provider: "default", id: "X", value: "{INLINE}" }} }} }} }}"#
        ),
        format!(
            r#"{{ routes: {{ a: {{ sessionKey: "s", secret: "{INLINE}", path: "/x" }}, b: {{ sessionKey: "s", secret: "{MULTI}", path: "/x/" }} }} }}"#
        ),
        format!(r#"{{ {INLINE}: 1 }}"#),
        format!(r#"{{ routes: {{}}, limits: {{ rateLimit: {{ maxRequests: "{INLINE}" }} }} }}"#),
        format!(
            r#"{{ routes: {{}}, secrets: {{ providers: {{ p: {{ source: "exec", command: "{INLINE}" }} }} }} }}"#
        ),
        format!(
            r#"{{ routes: {{}}, secrets: {{ providers: {{ p: {{ source: "exec", command: "/bin/x", env: {{ TOKEN: 1, OTHER: "{EXEC_TOKEN}" }} }} }} }} }}"#
        ),
        format!(
            r#"{{ routes: {{}}, secrets: {{ providers: {{ p: {{ source: "file", path: "/x", mode: "{INLINE}" }} }} }} }}"#
        ),
        format!(
            r#"{{ plugins: {{ entries: {{ webhooks: {{ config: {{ routes: {{ zap: {{ sessionKey: "s", secret: "{INLINE}", extra: "{MULTI}" }} }} }} }} }} }} }}"#
        ),
        format!(
            "{}",
            fixture
                .providers()
                .replace("source: \"file\"", "source: 'file', x: 1")
        ),
    ]
}

#[test]
fn no_debug_or_display_shows_a_secret() {
    let capture = captured();
    let fixture = Fixture::new("debug");
    let ref_of = |source, provider: &str, id: &str| SecretRef {
        source,
        provider: provider.into(),
        id: id.into(),
    };

    // The secret types.
    for value in SECRETS {
        let s = secret(value);
        check_debug("Secret", &s);
        check_display("Secret", &s);
        check_debug("Option<Vec<Secret>>", &Some(vec![s.clone(), s.clone()]));
        check_debug("SecretInput::Plain", &SecretInput::Plain(s));
    }
    let env_ref = ref_of(SecretSource::Env, "default", MISSING_ENV_VAR);
    check_debug("SecretRef", &env_ref);
    check_display("SecretRef", &env_ref);
    check_debug("SecretInput::Ref", &SecretInput::Ref(env_ref.clone()));

    // A configuration with every kind of secret, as loaded and as resolved.
    let text = fixture.good_config(INLINE);
    let config = WebhooksConfig::from_json5(&text).unwrap();
    check_debug("WebhooksConfig", &config);
    for route in config.routes() {
        check_debug("RouteConfig", route);
    }
    check_debug("SecretProviders", config.providers());
    for (name, provider) in config.providers().iter() {
        check_debug(name, provider);
    }
    let resolved = config.resolve();
    // The env var is not set in this process: that route and `multi` are skipped.
    assert_eq!(resolved.routes.len(), 3, "{:?}", resolved.skipped);
    check_debug("ResolvedConfig", &resolved);
    for route in &resolved.routes {
        check_debug("ResolvedRoute", route);
    }
    for skipped in &resolved.skipped {
        check_debug("SkippedRoute", skipped);
        check_display("SkippedRoute", skipped);
    }
    check_debug("warnings", &resolved.warnings());

    // Every way a ref can fail to resolve.
    let broken = WebhooksConfig::from_json5(&fixture.broken_config()).unwrap();
    let providers: &SecretProviders = broken.providers();
    let refs = [
        ref_of(SecretSource::Env, "default", MISSING_ENV_VAR),
        ref_of(SecretSource::File, "gone", "/hooks/file"),
        ref_of(SecretSource::File, "shared", "/hooks/file"),
        ref_of(SecretSource::File, "raw", "/hooks/file"),
        ref_of(SecretSource::File, "vault", "/hooks"),
        ref_of(SecretSource::File, "vault", "/nope"),
        ref_of(SecretSource::File, "vault", "hooks"),
        ref_of(SecretSource::File, "helper", "/hooks/file"),
        ref_of(SecretSource::Exec, "failing", "hook"),
        ref_of(SecretSource::Exec, "denied", "hook"),
        ref_of(SecretSource::Exec, "garbled", "hook"),
        ref_of(SecretSource::Exec, "helper", "other-id"),
        ref_of(SecretSource::Exec, "nobody", "hook"),
    ];
    for reference in &refs {
        let error = providers
            .resolve(reference)
            .expect_err(&reference.to_string());
        check_error(&format!("resolving {reference}"), &error);
    }
    let resolved = broken.resolve();
    assert_eq!(resolved.routes.len(), 1);
    check_debug("broken ResolvedConfig", &resolved);
    for skipped in &resolved.skipped {
        check_display("SkippedRoute", skipped);
    }

    // Every configuration error, loaded from text and from a file.
    for (n, text) in failing_configs(&fixture).iter().enumerate() {
        let error = WebhooksConfig::from_json5(text).expect_err(text);
        check_error(&format!("config error {n}"), &error);
        let path = fixture.path(&format!("failing-{n}.json5"));
        write_mode(&path, text, 0o600);
        let error = WebhooksConfig::load(&path).expect_err(text);
        check_error(&format!("config file error {n}"), &error);
        let error = Gateway::from_file(&path).expect_err(text);
        check_error(&format!("gateway error {n}"), &error);
    }
    let missing = WebhooksConfig::load(fixture.path("missing.json5")).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }));
    check_error("missing config file", &missing);
    // A directory where the file should be: read fails after open.
    check_error(
        "config directory",
        &WebhooksConfig::load(&fixture.dir).unwrap_err(),
    );

    // Layers, services and builders holding secrets.
    let secrets: Vec<Secret> = SECRETS.iter().map(|s| secret(s)).collect();
    let auth_config = SharedSecretAuthConfig::new(secrets.clone())
        .lockout(AuthLockout::new(LockoutConfig::default()));
    check_debug("SharedSecretAuthConfig", &auth_config);
    let layer = SharedSecretAuthLayer::new(auth_config.clone());
    check_debug("SharedSecretAuthLayer", &layer);
    let service = layer.layer(());
    check_debug("SharedSecretAuth", &service);
    let handle = layer.secrets_handle();
    handle.replace([secret(ROTATED), secret(INLINE_2)]);
    check_debug("SecretsHandle", &handle);
    check_debug("SharedSecretAuth after rotation", &service);

    let routes: Vec<ResolvedRoute> = ROUTE_IDS
        .iter()
        .zip(SECRETS)
        .map(|(id, value)| {
            ResolvedRoute::new(*id, session_key(id), [secret(value), secret(MULTI)])
                .with_child_sessions(ChildSessionPolicy::Descendant)
        })
        .collect();
    let pipeline = WebhookPipeline::in_memory(Limits::default());
    check_debug("WebhookPipeline", &pipeline);
    for route in &routes {
        check_debug("ResolvedRoute", route);
        check_debug("RouteService", &pipeline.route(route));
    }
    check_debug("RouteTable", &pipeline.table(&routes));
    let router = pipeline.router(&routes);
    check_debug("WebhookRouter", &router);
    // Futures of requests that carry secrets, right and wrong, before they are polled.
    for presented in [SECRETS[0], MULTI, ROTATED] {
        let request = || {
            let mut request = Request::post(format!("/plugins/webhooks/inline?token={presented}"))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {presented}"))
                .header("x-openclaw-webhook-secret", presented)
                .body(BufferedBody::from(format!(
                    r#"{{"action":"list_flows","s":"{presented}"}}"#
                )))
                .unwrap();
            request
                .extensions_mut()
                .insert(SocketAddr::from(([127, 0, 0, 1], 40000)));
            request
        };
        let mut route_service = pipeline.route(&routes[0]);
        check_debug(
            "RouteService future",
            &tower::Service::call(&mut route_service, request()),
        );
        let mut router = router.clone();
        check_debug(
            "router future",
            &tower::Service::call(&mut router, request()),
        );
    }
    check_debug("RouteTableHandle", &router.table_handle());
    let action = TaskFlowActionService::new(
        MemoryStore::new(),
        TaskFlowRoute::new("zap", session_key("zap")),
    );
    check_debug("TaskFlowActionService", &action);

    // The gateway, from a file, reloaded onto broken refs, and embedded.
    let config_path = fixture.path("gateway.json5");
    write_mode(&config_path, &fixture.good_config(INLINE), 0o600);
    let (gateway, report) = Gateway::from_file(&config_path).unwrap();
    check_debug("Gateway", &gateway);
    check_debug("LoadReport", &report);
    replace_file(&config_path, &fixture.broken_config(), 0o600);
    let report = gateway.reload().unwrap();
    assert_eq!(report.routes.len(), 1);
    check_debug("reload LoadReport", &report);
    check_debug("Gateway after reload", &gateway);
    let (embedded, report) = Gateway::embedded(secret(INLINE));
    check_debug("embedded Gateway", &embedded);
    check_debug("embedded LoadReport", &report);
    assert_no_secret("captured tracing output", &capture.text());
}

// ---- in process: everything logged -------------------------------------------------------------

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything this test process logs through `tracing`, at every level, from every test.
///
/// A process-wide subscriber, installed by every in-process test before it does anything: a
/// thread-local one (`set_default`) can miss events when another test thread registers a callsite
/// first, which would let a leak through unseen.
fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer({
                let capture = capture.clone();
                move || capture.clone()
            })
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        capture
    })
}

/// A request body that fails half-way, with an error that names the secret it carried.
struct FailingBody {
    sent: bool,
}

impl http_body::Body for FailingBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.sent {
            std::task::Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
        } else {
            self.sent = true;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"{\"action\":",
            )))))
        }
    }
}

#[tokio::test]
async fn nothing_logged_around_failures_shows_a_secret() {
    let capture = captured();

    let fixture = Fixture::new("tracing");
    let config_path = fixture.path("gateway.json5");
    write_mode(&config_path, &fixture.broken_config(), 0o600);
    let (gateway, _) = Gateway::from_file(&config_path).unwrap();
    replace_file(&config_path, &fixture.good_config(INLINE), 0o600);
    gateway.reload().unwrap();
    replace_file(&config_path, &fixture.broken_config(), 0o600);
    gateway.reload().unwrap();
    for text in failing_configs(&fixture) {
        replace_file(&config_path, &text, 0o600);
        assert!(gateway.reload().is_err());
    }

    // Requests full of failures, in process and over a socket.
    let router = gateway.router();
    // Each request from its own client address, so the lockout (3 failures here) stays out of it.
    let mut client = 10u8;
    let mut request = |path: &str, headers: &[(&str, &str)], body: &str| {
        client += 1;
        let mut builder = Request::post(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(BufferedBody::from(body.to_owned())).unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from(([127, 0, 0, client], 40000)));
        request
    };
    let inline_path = "/plugins/webhooks/inline";
    let json_type = ("content-type", "application/json");
    let good = format!("Bearer {INLINE_2}");
    let mut statuses = Vec::new();
    for (path, headers, body) in [
        (
            format!("{inline_path}?token={INLINE_2}"),
            vec![json_type, ("authorization", good.as_str())],
            "{}".to_owned(),
        ),
        (
            inline_path.to_owned(),
            vec![json_type, ("authorization", good.as_str())],
            format!(r#"{{"action":"create_flow","goal":"{INLINE_2}","bogus":1}}"#),
        ),
        (
            inline_path.to_owned(),
            vec![json_type, ("authorization", good.as_str())],
            "not json".to_owned(),
        ),
        (
            inline_path.to_owned(),
            vec![
                ("content-type", "text/plain"),
                ("authorization", good.as_str()),
            ],
            "{}".to_owned(),
        ),
        (
            "/plugins/webhooks/env".to_owned(),
            vec![json_type, ("authorization", good.as_str())],
            "{}".to_owned(),
        ),
    ] {
        let response = router
            .clone()
            .oneshot(request(&path, &headers, &body))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    for wrong in [INLINE, MULTI, EXEC_TOKEN, "", "x"]
        .iter()
        .map(|s| format!("Bearer {s}"))
        .chain(std::iter::once(good.clone()))
    {
        let response = router
            .clone()
            .oneshot(request(
                inline_path,
                &[json_type, ("authorization", &wrong)],
                r#"{"action":"list_flows"}"#,
            ))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 415, 404, 401, 401, 401, 401, 401, 200]
    );

    // A body that fails while being buffered (logged at debug), straight into the auth layer.
    let auth = SharedSecretAuthLayer::new(SharedSecretAuthConfig::new([secret(INLINE_2)]));
    let buffered = auth.layer(tower_webhooks::BodyLimit::new(
        TaskFlowActionService::new(
            MemoryStore::new(),
            TaskFlowRoute::new("zap", "agent:zap:main"),
        ),
        tower_webhooks::BodyLimitConfig::buffered(),
    ));
    let mut failing = Request::post("/hook")
        .header("content-type", "application/json")
        .header("authorization", good.as_str())
        .body(FailingBody { sent: false })
        .unwrap();
    failing
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40001)));
    let response = buffered.oneshot(failing).await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());

    // Over a socket: a connection cut inside a body, a lockout.
    let server = support::serve(gateway.router()).await;
    let mut stream = support::connect(server.addr).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        &post_bytes(
            inline_path,
            &[
                json_type,
                ("authorization", &good),
                ("content-length", "100"),
            ],
            b"{\"action\":",
        ),
    )
    .await
    .unwrap();
    drop(stream);
    for _ in 0..25 {
        let bad = format!("Bearer {INLINE}");
        let response = raw(
            server.addr,
            &post_bytes(inline_path, &[json_type, ("authorization", &bad)], b"{}"),
        )
        .await;
        assert!(matches!(response.status, 401 | 429));
    }
    server.shutdown().await;

    let logged = capture.text();
    assert!(
        logged.contains("[webhooks] skipping route env"),
        "the capture saw nothing:\n{logged}"
    );
    assert_no_secret("captured tracing output", &logged);
}

// ---- responses: no session key, no owner metadata ---------------------------------------------

/// Tasks labelled `hold` keep running when cancelled, so `cancel_flow` can answer `202`.
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

const OWNER_KEYS: [&str; 6] = [
    "ownerKey",
    "requesterSessionKey",
    "requesterOrigin",
    "chainId",
    "requesterAgentId",
    "\"metadata\"",
];

struct Caller {
    addr: SocketAddr,
    /// Session keys that must not appear, and child session keys the caller itself sent (which
    /// may contain a session key, by the `descendant` policy's design).
    session_keys: Vec<String>,
    sent_children: Vec<String>,
    seen: Vec<(String, u16, String)>,
}

impl Caller {
    async fn call(&mut self, route: &str, secret: &str, body: Value) -> (u16, Value) {
        if let Some(child) = body["childSessionKey"].as_str() {
            self.sent_children.push(child.to_owned());
        }
        let auth = format!("Bearer {secret}");
        let response = raw(
            self.addr,
            &post_bytes(
                &format!("/plugins/webhooks/{route}"),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body.to_string().as_bytes(),
            ),
        )
        .await;
        self.check(&format!("{route} {body}"), &response);
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, value)
    }

    async fn plain(&mut self, what: &str, request: &[u8]) -> u16 {
        let response = raw(self.addr, request).await;
        self.check(what, &response);
        response.status
    }

    fn check(&mut self, what: &str, response: &RawResponse) {
        let mut bytes = bytes_of(response);
        for child in &self.sent_children {
            bytes = bytes.replace(child.as_str(), "<child>");
        }
        for key in &self.session_keys {
            assert!(
                !bytes.contains(key.as_str()),
                "{what}: session key in\n{bytes}"
            );
        }
        for key in OWNER_KEYS {
            assert!(!bytes.contains(key), "{what}: {key} in\n{bytes}");
        }
        assert_no_secret(what, &bytes);
        let code = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        self.seen.push((what.to_owned(), response.status, code));
    }
}

#[tokio::test]
async fn no_answer_carries_a_session_key_or_owner_metadata() {
    let capture = captured();
    let store = MemoryStore::build(
        MemoryStoreConfig::default(),
        SystemClock::shared(),
        Arc::new(HoldLabelled),
    );
    let main_key = "agent:main:main";
    let other_key = "agent:other:main";
    let routes = [
        ResolvedRoute::new("main", main_key, [secret(INLINE)]),
        ResolvedRoute::new("other", other_key, [secret(MULTI)])
            .with_child_sessions(ChildSessionPolicy::Descendant),
    ];
    let pipeline = WebhookPipeline::new(store, Limits::default());
    let server = support::serve(pipeline.router(&routes)).await;
    let mut c = Caller {
        addr: server.addr,
        session_keys: vec![main_key.into(), other_key.into()],
        sent_children: Vec::new(),
        seen: Vec::new(),
    };
    let id_of = |v: &Value| v["result"]["flow"]["flowId"].as_str().unwrap().to_owned();
    let unknown = "00000000-0000-4000-8000-000000000000";

    // Reads and creates.
    let (status, created) = c
        .call(
            "main",
            INLINE,
            json!({"action": "create_flow", "goal": "g", "status": "running", "currentStep": "s",
                   "stateJson": {"k": [1, 2]}, "waitJson": null, "notifyPolicy": "silent"}),
        )
        .await;
    assert_eq!(status, 200);
    let f1 = id_of(&created);
    assert_eq!(
        c.call("main", INLINE, json!({"action": "create_flow"}))
            .await
            .0,
        400
    );
    for body in [
        json!({"action": "get_flow", "flowId": f1}),
        json!({"action": "get_flow", "flowId": unknown}),
        json!({"action": "list_flows"}),
        json!({"action": "find_latest_flow"}),
        json!({"action": "resolve_flow", "token": f1}),
        json!({"action": "resolve_flow", "token": main_key}),
        json!({"action": "resolve_flow", "token": unknown}),
        json!({"action": "get_task_summary", "flowId": f1}),
        json!({"action": "get_task_summary", "flowId": unknown}),
    ] {
        assert_eq!(c.call("main", INLINE, body).await.0, 200);
    }

    // Tasks: created, repeated, forbidden, on a missing flow.
    let run = |flow: &str, child: &str, label: &str| {
        json!({"action": "run_task", "flowId": flow, "runtime": "acp", "task": "t",
               "childSessionKey": child, "runId": "r1", "label": label, "agentId": "a",
               "status": "running", "progressSummary": "p", "startedAt": 5})
    };
    let (status, first) = c
        .call("main", INLINE, run(&f1, "agent:main:worker-1", "plain"))
        .await;
    assert_eq!(status, 200);
    let (status, again) = c
        .call("main", INLINE, run(&f1, "agent:main:worker-1", "plain"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        first["result"]["task"]["taskId"],
        again["result"]["task"]["taskId"]
    );
    assert_eq!(
        c.call("main", INLINE, run(&f1, "agent:evil:worker", "plain"))
            .await
            .0,
        403
    );
    assert_eq!(
        c.call("main", INLINE, run(unknown, "agent:main:w", "plain"))
            .await
            .0,
        404
    );
    assert_eq!(
        c.call(
            "main",
            INLINE,
            json!({"action": "get_task_summary", "flowId": f1})
        )
        .await
        .0,
        200
    );

    // Every mutation, applied, stale, missing.
    let mutations = [
        json!({"action": "set_waiting", "flowId": f1, "expectedRevision": 0, "waitJson": {"w": 1},
               "blockedTaskId": "t1", "blockedSummary": "b"}),
        json!({"action": "resume_flow", "flowId": f1, "expectedRevision": 1, "status": "running"}),
        json!({"action": "request_cancel", "flowId": f1, "expectedRevision": 2}),
        json!({"action": "fail_flow", "flowId": f1, "expectedRevision": 3, "blockedSummary": "x"}),
        json!({"action": "finish_flow", "flowId": f1, "expectedRevision": 4, "stateJson": 1}),
    ];
    for body in &mutations {
        assert_eq!(c.call("main", INLINE, body.clone()).await.0, 200, "{body}");
        let (status, stale) = c.call("main", INLINE, body.clone()).await;
        assert_eq!(
            (status, stale["code"].as_str()),
            (409, Some("revision_conflict"))
        );
        let mut missing = body.clone();
        missing["flowId"] = json!(unknown);
        assert_eq!(c.call("main", INLINE, missing).await.0, 404);
    }
    // Terminal now: run_task and cancel_flow refuse it, with the flow and its tasks.
    assert_eq!(
        c.call("main", INLINE, run(&f1, "agent:main:worker-2", "plain"))
            .await
            .0,
        409
    );
    assert_eq!(
        c.call(
            "main",
            INLINE,
            json!({"action": "cancel_flow", "flowId": f1})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        c.call(
            "main",
            INLINE,
            json!({"action": "cancel_flow", "flowId": unknown})
        )
        .await
        .0,
        404
    );

    // cancel_flow completed (200) and pending (202); run_task after the cancel request.
    for (label, expected) in [("plain", 200), ("hold", 202)] {
        let (_, created) = c
            .call(
                "main",
                INLINE,
                json!({"action": "create_flow", "goal": label}),
            )
            .await;
        let flow = id_of(&created);
        assert_eq!(
            c.call("main", INLINE, run(&flow, "agent:main:w", label))
                .await
                .0,
            200
        );
        let (status, cancelled) = c
            .call(
                "main",
                INLINE,
                json!({"action": "cancel_flow", "flowId": flow}),
            )
            .await;
        assert_eq!(status, expected, "{cancelled}");
        let (status, refused) = c
            .call("main", INLINE, run(&flow, "agent:main:w2", label))
            .await;
        assert_eq!(status, 409);
        assert!(refused["code"] == "cancel_requested" || refused["code"] == "terminal");
    }

    // The other owner: its own flows, with a descendant child key that contains its session key
    // because the caller put it there; the first owner's flow is missing to it.
    let (_, created) = c
        .call(
            "other",
            MULTI,
            json!({"action": "create_flow", "goal": "o"}),
        )
        .await;
    let f2 = id_of(&created);
    let descendant = format!("{other_key}:sub-1");
    let (status, ran) = c.call("other", MULTI, run(&f2, &descendant, "plain")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ran["result"]["task"]["childSessionKey"],
        descendant.as_str()
    );
    for body in [
        json!({"action": "get_flow", "flowId": f1}),
        json!({"action": "list_flows"}),
        json!({"action": "resolve_flow", "token": f1}),
        json!({"action": "resolve_flow", "token": other_key}),
        json!({"action": "get_task_summary", "flowId": f1}),
        json!({"action": "set_waiting", "flowId": f1, "expectedRevision": 5}),
        json!({"action": "run_task", "flowId": f1, "runtime": "acp", "task": "t"}),
        json!({"action": "cancel_flow", "flowId": f1}),
        json!({"action": "cancel_flow", "flowId": f2}),
    ] {
        c.call("other", MULTI, body).await;
    }

    // Plain-text rejections.
    let path = "/plugins/webhooks/main";
    let auth = format!("Bearer {INLINE}");
    let json_type = ("content-type", "application/json");
    let bearer = ("authorization", auth.as_str());
    let plain = [
        (
            "wrong secret",
            post_bytes(path, &[json_type, ("authorization", "Bearer nope")], b"{}"),
        ),
        (
            "query",
            post_bytes(
                &format!("{path}?token={INLINE}"),
                &[json_type, bearer],
                b"{}",
            ),
        ),
        (
            "415",
            post_bytes(path, &[("content-type", "text/plain"), bearer], b"{}"),
        ),
        (
            "413",
            post_bytes(
                path,
                &[json_type, bearer, ("content-length", "999999999")],
                b"",
            ),
        ),
        ("bad json", post_bytes(path, &[json_type, bearer], b"{nope")),
        (
            "404",
            post_bytes("/plugins/webhooks/none", &[json_type, bearer], b"{}"),
        ),
        (
            "405",
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes(),
        ),
    ];
    for (what, request) in plain {
        c.plain(what, &request).await;
    }

    // Every outcome was met.
    let statuses: std::collections::BTreeSet<(u16, String)> = c
        .seen
        .iter()
        .map(|(_, s, code)| (*s, code.clone()))
        .collect();
    for expected in [
        (200, ""),
        (202, "cancel_pending"),
        (400, "invalid_request"),
        (400, ""),
        (401, ""),
        (403, "child_session_forbidden"),
        (404, "not_found"),
        (404, ""),
        (405, ""),
        (409, "revision_conflict"),
        (409, "terminal"),
        (409, "cancel_requested"),
        (413, ""),
        (415, ""),
    ] {
        assert!(
            statuses.contains(&(expected.0, expected.1.to_owned())),
            "never answered {expected:?}: {statuses:?}"
        );
    }
    server.shutdown().await;
    assert_no_secret("captured tracing output", &capture.text());
}
