//! Regressions in config loading and secret resolution:
//!
//! - a deeply nested JSON5 config used to overflow the parser's stack: the gateway aborted at start
//!   instead of exiting 2, and died on a reload instead of keeping its routes (SPEC §1);
//! - a timed-out `exec` helper used to leave the processes it started running (SPEC §1.2);
//! - a byte-order mark around a resolved secret used to be kept, and U+0085 was trimmed, where
//!   JavaScript's `trim` does the opposite (SPEC §1, §1.2).
//!
//! Unix only: helpers are `#!/bin/sh` scripts, processes are looked up in `/proc`, and the gateway
//! is reloaded with `SIGHUP`.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use support::gateway_process::{Subprocess, gateway_binary, run_to_exit};
use support::temp::TempDir;
use support::{post_bytes, raw};
use tower_webhooks::{WebhooksConfig, config::ConfigError};

// ---------------------------------------------------------------------------------------------
// helpers

/// Test-only: every test uses its own variable names, so parallel tests never share one.
fn set_env(name: &str, value: &str) {
    // SAFETY: names are unique per test and no test reads another's variables.
    unsafe { std::env::set_var(name, value) }
}

/// `{ plugins: {}, nested: [[…]] }`: a whole OpenClaw file (so the ignored `nested` section may hold
/// anything) whose deepest value sits `depth` levels down, the root object being level 1.
fn nested_config(depth: usize) -> String {
    let arrays = depth - 1;
    format!(
        "{{ plugins: {{}}, nested: {}{} }}",
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

/// One route `r` whose `secret` is `secret_json5`, with `providers_json5` as `secrets.providers`.
fn one_route(secret_json5: &str, providers_json5: &str) -> String {
    format!(
        "{{ routes: {{ r: {{ sessionKey: 'agent:main:main', secret: {secret_json5} }} }}, \
         secrets: {{ providers: {providers_json5} }} }}"
    )
}

/// The secrets of the single route `r`, or its skip warning.
fn resolve_one(text: &str) -> Result<Vec<String>, String> {
    let config = WebhooksConfig::from_json5(text).unwrap_or_else(|e| panic!("{e}"));
    let resolved = config.resolve();
    match (resolved.routes.as_slice(), resolved.skipped.as_slice()) {
        ([route], []) => Ok(route
            .secrets
            .iter()
            .map(|s| s.expose().to_owned())
            .collect()),
        ([], [skip]) => Err(skip.to_string()),
        other => panic!("expected exactly one route, got {other:?}"),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. nesting depth

const TOO_DEEP: &str = "too deeply nested: more than 128 levels of arrays and objects";

#[test]
fn a_config_nested_deeper_than_128_levels_is_a_config_error() {
    assert!(WebhooksConfig::from_json5(&nested_config(128)).is_ok());

    let error = WebhooksConfig::from_json5(&nested_config(129)).unwrap_err();
    // Level 129 is the 128th `[`: after `{ plugins: {}, nested: ` (23 characters) and 127 more.
    assert_eq!(
        error.to_string(),
        format!("{TOO_DEEP} (at line 1, column {})", 23 + 128)
    );
}

#[test]
fn a_config_nested_1000_to_100_000_levels_is_a_config_error_not_a_stack_overflow() {
    // Before the depth check, 1,000 levels overflowed this thread's stack and aborted the test
    // binary; deeper texts met the parser's own stack guard, a syntax error.
    for depth in [1_000, 4_000, 100_000] {
        let error = WebhooksConfig::from_json5(&nested_config(depth)).unwrap_err();
        assert!(matches!(error, ConfigError::TooDeep { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("{TOO_DEEP} (at line 1, column 151)")
        );
    }

    // Unclosed brackets too: the check stops at the first level too many.
    let error = WebhooksConfig::from_json5(&"{".repeat(100_000)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{TOO_DEEP} (at line 1, column 129)")
    );
}

#[test]
fn a_config_file_nested_too_deep_is_named_in_the_error() {
    let dir = TempDir::new("deep-file");
    let file = dir.file("deep.json5", format!("\n\n{}", nested_config(4_000)), 0o600);
    let error = WebhooksConfig::load(&file).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{}: {TOO_DEEP} (at line 3, column 151)", file.display())
    );
}

#[test]
fn brackets_inside_strings_and_comments_do_not_count_as_nesting() {
    let deep = "[{".repeat(200);
    let text = format!(
        r#"// {deep}
/* {deep}
   still a comment: */
{{
  routes: {{
    zap: {{
      sessionKey: "agent:main:main",
      secret: 'it\'s {deep} \\',
      description: "quote \" {deep} backslash \\ continued \
{deep}",
      controllerId: 'crlf continuation \{}{deep}',
    }},
  }},
  // {deep} /* a block opener inside a line comment opens nothing
  limits: {{ rateLimit: {{ maxRequests: 5 }} }}, /* {deep} // */
}}
"#,
        "\r\n"
    );
    let config = WebhooksConfig::from_json5(&text).unwrap_or_else(|e| panic!("{e}"));
    let route = &config.routes()[0];
    assert!(route.description.as_deref().unwrap().contains(&deep));
    assert!(route.controller_id.contains(&deep));
    assert_eq!(config.limits().rate_limit.max_requests, 5);

    // The same 200 levels outside a string are refused.
    let error = WebhooksConfig::from_json5(&format!(
        "{{ plugins: {{}}, nested: {deep}{} }}",
        "}]".repeat(200)
    ))
    .unwrap_err();
    assert!(error.to_string().starts_with(TOO_DEEP), "{error}");
}

const SECRET: &str = "deep-config-inline-secret";
const ROUTE: &str = "/plugins/webhooks/zap";

fn good_gateway_config() -> String {
    format!("{{ routes: {{ zap: {{ sessionKey: 'agent:main:main', secret: '{SECRET}' }} }} }}")
}

async fn list_flows(addr: std::net::SocketAddr) -> u16 {
    let auth = format!("Bearer {SECRET}");
    raw(
        addr,
        &post_bytes(
            ROUTE,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            br#"{"action":"list_flows"}"#,
        ),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_exits_2_on_a_config_nested_4000_deep() {
    tokio::task::spawn_blocking(gateway_binary).await.unwrap();
    let dir = TempDir::new("deep-start");
    let config = dir.file("webhooks.json5", nested_config(4_000), 0o600);

    let (status, output) = run_to_exit(Subprocess::command(Some(&config))).await;
    // Before the depth check the json5 parser overflowed its stack: SIGABRT, no message.
    assert_eq!(status.code(), Some(2), "{status}: {output}");
    assert!(
        output.contains(&format!("gateway: {}: {TOO_DEEP}", config.display())),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_onto_a_config_nested_1000_deep_or_more_keeps_the_gateway_and_its_routes() {
    tokio::task::spawn_blocking(gateway_binary).await.unwrap();
    let dir = TempDir::new("deep-reload");
    let config = dir.file("webhooks.json5", good_gateway_config(), 0o600);

    let mut gateway = Subprocess::start(Subprocess::command(Some(&config)));
    let addr = gateway.listening().await;
    assert_eq!(list_flows(addr).await, 200);

    // Before the depth check, 1,000 levels overflowed the reload thread's stack (SIGABRT, no
    // outcome logged); from about 1,050 the parser's own stack guard answered a syntax error.
    for depth in [1_000, 4_000, 100_000] {
        dir.file("webhooks.json5", nested_config(depth), 0o600);
        let outcome = gateway.reload().await;
        let message = outcome["fields"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            format!(
                "reload failed, old routes kept: {}: {TOO_DEEP} (at line 1, column 151)",
                config.display()
            ),
            "{depth} levels"
        );
        assert!(
            gateway.child.try_wait().unwrap().is_none(),
            "the gateway exited"
        );
        assert_eq!(list_flows(addr).await, 200, "the old route is gone");
    }

    let output = gateway.stop().await;
    assert!(!output.contains(SECRET), "{output}");
}

// ---------------------------------------------------------------------------------------------
// 2. exec helpers that time out

/// Whether process `pid` is gone: no `/proc` entry, or a zombie (killed, waiting for a parent to
/// reap it; the container's PID 1 may never do so).
fn process_is_gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S …`: the state follows the last `)`, since `comm` may itself hold one.
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
    }
}

#[test]
fn an_exec_helper_that_times_out_is_killed_with_every_process_it_started() {
    let dir = TempDir::new("exec-group");
    let pid_file = dir.path().join("sleep.pid");
    // The shell starts a child that inherits stdout, records its PID, and waits for it: killing
    // only the shell leaves the `sleep` running and holding the pipe the reader thread blocks on.
    let helper = dir.script(
        "slow",
        &format!(
            "/bin/sleep 300 &\necho $! > '{}.tmp'\n/bin/mv '{0}.tmp' '{0}'\nwait",
            path_str(&pid_file)
        ),
    );
    let text = one_route(
        "{ source: 'exec', provider: 'x', id: 'k' }",
        &format!(
            "{{ x: {{ source: 'exec', command: '{}', timeoutMs: 2000 }} }}",
            path_str(&helper)
        ),
    );

    let (done, returned) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(resolve_one(&text));
    });
    let outcome = returned
        .recv_timeout(Duration::from_secs(60))
        .expect("resolution did not return");
    let reason = outcome.expect_err("the route must be skipped");
    assert!(
        reason.ends_with(&format!(
            "exec provider {} timed out after 2000 ms",
            helper.display()
        )),
        "{reason}"
    );

    let pid = fs::read_to_string(&pid_file)
        .expect("the helper never recorded its child's PID within its 2 s")
        .trim()
        .to_owned();
    assert!(!pid.is_empty());
    // SIGKILL is asynchronous: poll, bounded, for the kernel to finish the process.
    for _ in 0..1_000 {
        if process_is_gone(&pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the helper's child {pid} is still running after the timeout");
}

// ---------------------------------------------------------------------------------------------
// 3. trimming as JavaScript does

const BOM: char = '\u{feff}';
/// NEXT LINE: White_Space in Unicode (so Rust's `str::trim` removes it), but neither WhiteSpace nor
/// LineTerminator in ECMAScript (§12.2, §12.3), so `String.prototype.trim` keeps it.
const NEL: char = '\u{85}';

/// A secret `value` through every kind of ref: env, file (json and singleValue) and exec.
fn resolve_through_every_source(tag: &str, value: &str) -> Vec<(&'static str, String)> {
    let dir = TempDir::new(tag);
    let env_var = format!(
        "TW_CONFIG_REGRESSIONS_{}",
        tag.to_uppercase().replace('-', "_")
    );
    set_env(&env_var, value);
    let json_file = dir.file(
        "secrets.json",
        serde_json::json!({ "hooks": { "zap": value } }).to_string(),
        0o600,
    );
    // An editor that saves with a BOM puts it before everything, a trailing newline after.
    let single_file = dir.file("secret.txt", format!("{value}\n"), 0o600);
    let helper = dir.script(
        "helper",
        &format!(
            "printf '%s' '{}'",
            serde_json::json!({ "protocolVersion": 1, "values": { "k": value } })
        ),
    );
    let providers = format!(
        "{{ json: {{ source: 'file', path: '{}' }}, \
            single: {{ source: 'file', path: '{}', mode: 'singleValue' }}, \
            helper: {{ source: 'exec', command: '{}' }} }}",
        path_str(&json_file),
        path_str(&single_file),
        path_str(&helper),
    );
    [
        (
            "env",
            format!("{{ source: 'env', provider: 'default', id: '{env_var}' }}"),
        ),
        (
            "file json",
            "{ source: 'file', provider: 'json', id: '/hooks/zap' }".to_owned(),
        ),
        (
            "file singleValue",
            "{ source: 'file', provider: 'single', id: 'value' }".to_owned(),
        ),
        (
            "exec",
            "{ source: 'exec', provider: 'helper', id: 'k' }".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(source, reference)| {
        let secrets = resolve_one(&one_route(&reference, &providers))
            .unwrap_or_else(|skip| panic!("{source}: {skip}"));
        (source, secrets.concat())
    })
    .collect()
}

#[test]
fn a_byte_order_mark_is_trimmed_from_every_resolved_secret() {
    let resolved = resolve_through_every_source("bom", &format!("{BOM}bom-secret{BOM} "));
    for (source, secret) in resolved {
        assert_eq!(secret, "bom-secret", "{source}: {secret:?}");
    }
}

#[test]
fn next_line_u0085_is_kept_around_a_resolved_secret_as_javascript_trim_keeps_it() {
    let value = format!("{NEL}nel-secret{NEL}");
    let resolved = resolve_through_every_source("nel", &format!("\t{value} "));
    for (source, secret) in resolved {
        assert_eq!(secret, value, "{source}: {secret:?}");
    }
}

#[test]
fn config_strings_are_trimmed_as_javascript_trims_them() {
    let text = format!(
        "{{ routes: {{ '{BOM}zap\u{3000}': {{ sessionKey: '{BOM}agent:main:main{NEL}', \
         secret: '\\u2028{BOM}inline-secret\u{a0}', description: '{NEL}' }} }} }}"
    );
    let config = WebhooksConfig::from_json5(&text).unwrap_or_else(|e| panic!("{e}"));
    let route = &config.routes()[0];
    assert_eq!(route.id, "zap");
    assert_eq!(route.path, "/plugins/webhooks/zap");
    assert_eq!(route.session_key, format!("agent:main:main{NEL}"));
    assert_eq!(route.description.as_deref(), Some("\u{85}"));
    let resolved = config.resolve();
    assert_eq!(resolved.routes[0].secrets[0].expose(), "inline-secret");

    // Nothing but JavaScript whitespace is empty.
    let blank = format!(
        "{{ routes: {{ zap: {{ sessionKey: 'k', secret: '{BOM}\\u2029\u{202f}\u{1680}\u{b}' }} }} }}"
    );
    assert_eq!(
        WebhooksConfig::from_json5(&blank).unwrap_err().to_string(),
        "webhooks.routes.zap.secret: must not be empty"
    );
}
