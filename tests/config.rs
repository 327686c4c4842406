//! The configuration loader: SPEC §1 (routes, paths, secrets) and §2.5 (limits).
//!
//! Unix only: file modes, symlinks and `#!/bin/sh` helpers are what is being tested.
#![cfg(unix)]

#[path = "support/temp.rs"]
mod temp;

use std::borrow::Cow;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use temp::TempDir;
use tower_webhooks::{
    WebhooksConfig,
    config::{
        ConfigError, FileMode, Limits, SecretInput, SecretProvider, SecretRef, SecretSource,
        normalize_webhook_path,
    },
    taskflow::ChildSessionPolicy,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn load(text: &str) -> WebhooksConfig {
    match WebhooksConfig::from_json5(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn error(text: &str) -> String {
    match WebhooksConfig::from_json5(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Test-only: every test uses its own variable names, so parallel tests never share one.
fn set_env(name: &str, value: &str) {
    // SAFETY: names are unique per test and no test reads another's variables.
    unsafe { std::env::set_var(name, value) }
}

/// A plugin config with one route `r` whose `secret` is `secret_json5`, plus `providers_json5`.
fn one_route(secret_json5: &str, providers_json5: &str) -> String {
    format!(
        "{{ routes: {{ r: {{ sessionKey: 'agent:main:main', secret: {secret_json5} }} }}, \
         secrets: {{ providers: {providers_json5} }} }}"
    )
}

/// Resolves the single route `r`: its secrets, or the skip warning.
fn resolve_one(text: &str) -> Result<Vec<String>, String> {
    let resolved = load(text).resolve();
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

fn skip_reason(text: &str) -> String {
    resolve_one(text).expect_err("expected the route to be skipped")
}

fn path_str(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// routes: defaults, paths, order

#[test]
fn route_defaults() {
    let config = load("{ routes: { zap: { sessionKey: 'agent:main:main', secret: 'abc' } } }");
    assert!(config.enabled());
    let [route] = config.routes() else {
        panic!("one route expected")
    };
    assert_eq!(route.id, "zap");
    assert!(route.enabled);
    assert_eq!(route.path, "/plugins/webhooks/zap");
    assert_eq!(route.session_key, "agent:main:main");
    assert_eq!(route.controller_id, "webhooks/zap");
    assert_eq!(route.description, None);
    assert_eq!(route.child_sessions, ChildSessionPolicy::SameAgent);
    assert!(matches!(route.secret.as_slice(), [SecretInput::Plain(s)] if s.expose() == "abc"));
    assert_eq!(config.limits(), &Limits::default());
    assert!(config.providers().is_empty());
}

#[test]
fn explicit_fields_are_trimmed_and_kept() {
    let config = load(
        r#"{ routes: { "  zap  ": {
            enabled: true,
            path: "  hooks/Zap/  ",
            sessionKey: "  agent:ops:main ",
            secret: "  s  ",
            controllerId: " ctl/1 ",
            description: " a note ",
            childSessions: [" agent:ops:sub: ", "agent:ops:x:"],
        } } }"#,
    );
    let route = &config.routes()[0];
    assert_eq!(route.id, "zap");
    assert_eq!(route.path, "/hooks/Zap");
    assert_eq!(route.session_key, "agent:ops:main");
    assert_eq!(route.controller_id, "ctl/1");
    assert_eq!(route.description.as_deref(), Some("a note"));
    assert_eq!(
        route.child_sessions,
        ChildSessionPolicy::Prefixes(vec!["agent:ops:sub:".into(), "agent:ops:x:".into()])
    );
    assert!(matches!(&route.secret[0], SecretInput::Plain(s) if s.expose() == "s"));
}

#[test]
fn child_sessions_spellings() {
    for (json, expected) in [
        ("'same-agent'", ChildSessionPolicy::SameAgent),
        ("'descendant'", ChildSessionPolicy::Descendant),
        ("'any'", ChildSessionPolicy::Any),
        ("[]", ChildSessionPolicy::Prefixes(vec![])),
    ] {
        let config = load(&format!(
            "{{ routes: {{ r: {{ sessionKey: 'k', secret: 's', childSessions: {json} }} }} }}"
        ));
        assert_eq!(config.routes()[0].child_sessions, expected, "{json}");
    }
    for bad in ["'sameagent'", "'ANY'", "1", "true", "{}"] {
        assert_eq!(
            error(&format!(
                "{{ routes: {{ r: {{ sessionKey: 'k', secret: 's', childSessions: {bad} }} }} }}"
            )),
            r#"webhooks.routes.r.childSessions: must be "same-agent", "descendant", "any" or an array of prefixes"#,
            "{bad}"
        );
    }
    assert_eq!(
        error("{ routes: { r: { sessionKey: 'k', secret: 's', childSessions: ['a:', ' '] } } }"),
        "webhooks.routes.r.childSessions[1]: must not be empty"
    );
    assert_eq!(
        error("{ routes: { r: { sessionKey: 'k', secret: 's', childSessions: ['a:', 3] } } }"),
        "webhooks.routes.r.childSessions[1]: must be a string"
    );
}

#[test]
fn path_normalisation() {
    for (input, expected) in [
        ("webhooks/slack/", "/webhooks/slack"),
        ("/webhooks/slack", "/webhooks/slack"),
        ("", "/"),
        ("   ", "/"),
        ("/", "/"),
        ("//", "/"),
        ("a/", "/a"),
        ("a", "/a"),
        ("/a//", "/a/"),
        ("a//b", "/a//b"),
        ("  /Hooks/Zap/ ", "/Hooks/Zap"),
        ("/x%2Fy/", "/x%2Fy"),
        ("/%7Euser", "/%7Euser"),
    ] {
        assert_eq!(normalize_webhook_path(input), expected, "{input:?}");
    }
}

#[test]
fn path_normalisation_borrows_when_it_can() {
    for input in ["/hooks/zap", "/", "/hooks/zap/", " /hooks "] {
        assert!(
            matches!(normalize_webhook_path(input), Cow::Borrowed(_)),
            "{input:?}"
        );
    }
    assert!(matches!(normalize_webhook_path("hooks"), Cow::Owned(_)));
}

#[test]
fn route_paths_are_normalised() {
    let config = load(
        "{ routes: { a: { path: 'webhooks/slack/', sessionKey: 'k', secret: 's' },
                     b: { path: '/B//', sessionKey: 'k', secret: 's' } } }",
    );
    assert_eq!(config.routes()[0].path, "/webhooks/slack");
    assert_eq!(config.routes()[1].path, "/B/");
}

#[test]
fn routes_keep_file_order() {
    let config = load(
        "{ routes: { zulu: { sessionKey: 'k', secret: 's' }, alpha: { sessionKey: 'k', secret: 's' },
                     mike: { sessionKey: 'k', secret: 's' }, bravo: { sessionKey: 'k', secret: 's' } } }",
    );
    let ids: Vec<_> = config.routes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["zulu", "alpha", "mike", "bravo"]);
    let resolved = config.resolve();
    let ids: Vec<_> = resolved.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["zulu", "alpha", "mike", "bravo"]);
}

#[test]
fn duplicate_paths_fail_with_the_exact_message() {
    let text = "{ routes: {
        first: { path: '/hooks/x', sessionKey: 'k', secret: 's' },
        middle: { path: '/hooks/y', sessionKey: 'k', secret: 's' },
        later: { path: 'hooks/x/', sessionKey: 'k', secret: 's' },
    } }";
    assert_eq!(
        error(text),
        "webhooks.routes.later.path conflicts with routes.first.path (/hooks/x)."
    );
    let err = WebhooksConfig::from_json5(text).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::DuplicatePath { ref route_id, ref first_route_id, ref path }
            if route_id == "later" && first_route_id == "first" && path == "/hooks/x"
    ));

    // A default path conflicts like an explicit one.
    assert_eq!(
        error(
            "{ routes: { a: { path: '/plugins/webhooks/b', sessionKey: 'k', secret: 's' },
                         b: { sessionKey: 'k', secret: 's' } } }"
        ),
        "webhooks.routes.b.path conflicts with routes.a.path (/plugins/webhooks/b)."
    );
    // Case and `//` make different paths, so these do not conflict.
    load(
        "{ routes: { a: { path: '/x', sessionKey: 'k', secret: 's' },
                     b: { path: '/X', sessionKey: 'k', secret: 's' },
                     c: { path: '//x', sessionKey: 'k', secret: 's' } } }",
    );
}

#[test]
fn a_disabled_route_does_not_reserve_its_path() {
    let config = load(
        "{ routes: {
            old: { enabled: false, path: '/hooks/x', sessionKey: 'k', secret: 'old' },
            new: { path: '/hooks/x/', sessionKey: 'k', secret: 'new' },
        } }",
    );
    assert_eq!(config.routes().len(), 2);
    assert!(!config.routes()[0].enabled);
    let resolved = config.resolve();
    assert_eq!(resolved.routes.len(), 1);
    assert_eq!(resolved.routes[0].id, "new");
    assert_eq!(resolved.routes[0].path, "/hooks/x");
    assert!(resolved.skipped.is_empty());

    // Two disabled routes on one path are fine too.
    load(
        "{ routes: { a: { enabled: false, path: '/x', sessionKey: 'k', secret: 's' },
                     b: { enabled: false, path: '/x', sessionKey: 'k', secret: 's' } } }",
    );
}

#[test]
fn a_disabled_route_is_still_validated_but_never_resolved() {
    assert_eq!(
        error("{ routes: { a: { enabled: false, sessionKey: 'k', secret: 's', bogus: 1 } } }"),
        "webhooks.routes.a.bogus: unknown key"
    );
    let resolved = load(
        "{ routes: { a: { enabled: false, sessionKey: 'k',
            secret: { source: 'env', provider: 'default', id: 'TW_CFG_DISABLED_NEVER_SET' } } } }",
    )
    .resolve();
    assert!(resolved.routes.is_empty());
    assert!(resolved.skipped.is_empty(), "{:?}", resolved.skipped);
}

#[test]
fn a_repeated_key_keeps_its_last_value() {
    let config = load(
        "{ routes: { a: { sessionKey: 'k', secret: 'one' }, b: { sessionKey: 'k', secret: 's' },
                     a: { sessionKey: 'k', secret: 'two' } } }",
    );
    let ids: Vec<_> = config.routes().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(config.resolve().routes[0].secrets[0].expose(), "two");
}

#[test]
fn duplicate_route_ids_after_trimming() {
    assert_eq!(
        error(
            "{ routes: { a: { sessionKey: 'k', secret: 's' }, ' a ': { sessionKey: 'k', secret: 's' } } }"
        ),
        "webhooks.routes.a: duplicate route id (ids are trimmed)"
    );
    assert_eq!(
        error("{ routes: { ' ': { sessionKey: 'k', secret: 's' } } }"),
        "webhooks.routes: route ids must not be empty"
    );
}

// ---------------------------------------------------------------------------------------------
// validation: unknown keys, empty strings, types

#[test]
fn unknown_keys_at_every_level() {
    let cases = [
        (
            "{ routes: {}, extra: 1 }".to_owned(),
            "webhooks.extra: unknown key",
        ),
        (
            "{ routes: { zap: { sessionKey: 'k', secret: 's', foo: 1 } } }".to_owned(),
            "webhooks.routes.zap.foo: unknown key",
        ),
        (
            "{ routes: { zap: { sessionKey: 'k', secret: { source: 'env', provider: 'default', id: 'X', extra: 1 } } } }".to_owned(),
            "webhooks.routes.zap.secret.extra: unknown key",
        ),
        (
            "{ routes: { zap: { sessionKey: 'k', secret: ['a', { source: 'env', provider: 'default', id: 'X', value: 'v' }] } } }".to_owned(),
            "webhooks.routes.zap.secret[1].value: unknown key",
        ),
        (
            "{ limits: { nope: 1 } }".to_owned(),
            "webhooks.limits.nope: unknown key",
        ),
        (
            one_route("'s'", "{ e: { source: 'env', allowlist: [], extra: 1 } }"),
            "secrets.providers.e.extra: unknown key",
        ),
        (
            one_route("'s'", "{ f: { source: 'file', path: '/x', mode: 'json', passEnv: [] } }"),
            "secrets.providers.f.passEnv: unknown key",
        ),
        (
            one_route("'s'", "{ x: { source: 'exec', command: '/bin/true', jsonOnly: true } }"),
            "secrets.providers.x.jsonOnly: unknown key",
        ),
        (
            "{ plugins: { entries: { webhooks: { config: { routes: {}, other: 1 } } } } }".to_owned(),
            "webhooks.other: unknown key",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
    for section in ["rateLimit", "inFlight", "body", "authFailures"] {
        assert_eq!(
            error(&format!("{{ limits: {{ {section}: {{ bogus: 1 }} }} }}")),
            format!("webhooks.limits.{section}.bogus: unknown key")
        );
    }
}

#[test]
fn the_first_unknown_key_in_file_order_is_named() {
    assert_eq!(
        error("{ routes: { zap: { zz: 1, sessionKey: 'k', aa: 2, secret: 's' } } }"),
        "webhooks.routes.zap.zz: unknown key"
    );
}

#[test]
fn empty_strings_are_invalid() {
    for (field, text) in [
        (
            "sessionKey",
            "{ routes: { r: { sessionKey: '  ', secret: 's' } } }",
        ),
        (
            "secret",
            "{ routes: { r: { sessionKey: 'k', secret: ' \\t ' } } }",
        ),
        (
            "path",
            "{ routes: { r: { sessionKey: 'k', secret: 's', path: ' ' } } }",
        ),
        (
            "controllerId",
            "{ routes: { r: { sessionKey: 'k', secret: 's', controllerId: '' } } }",
        ),
        (
            "description",
            "{ routes: { r: { sessionKey: 'k', secret: 's', description: ' ' } } }",
        ),
        (
            "secret.provider",
            "{ routes: { r: { sessionKey: 'k', secret: { source: 'env', provider: ' ', id: 'X' } } } }",
        ),
        (
            "secret.id",
            "{ routes: { r: { sessionKey: 'k', secret: { source: 'env', provider: 'default', id: '' } } } }",
        ),
        (
            "secret[1]",
            "{ routes: { r: { sessionKey: 'k', secret: ['a', ''] } } }",
        ),
    ] {
        assert_eq!(
            error(text),
            format!("webhooks.routes.r.{field}: must not be empty"),
            "{text}"
        );
    }
    assert_eq!(
        error(&one_route(
            "'s'",
            "{ e: { source: 'env', allowlist: ['A', ' '] } }"
        )),
        "secrets.providers.e.allowlist[1]: must not be empty"
    );
}

#[test]
fn missing_and_mistyped_fields() {
    let cases = [
        (
            "{ routes: { r: { secret: 's' } } }",
            "webhooks.routes.r.sessionKey: is required",
        ),
        (
            "{ routes: { r: { sessionKey: 'k' } } }",
            "webhooks.routes.r.secret: is required",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: { provider: 'p', id: 'i' } } } }",
            "webhooks.routes.r.secret.source: is required",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: { source: 'env', id: 'i' } } } }",
            "webhooks.routes.r.secret.provider: is required",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: { source: 'env', provider: 'p' } } } }",
            "webhooks.routes.r.secret.id: is required",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: { source: 'vault', provider: 'p', id: 'i' } } } }",
            r#"webhooks.routes.r.secret.source: must be "env", "file" or "exec""#,
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: 42 } } }",
            "webhooks.routes.r.secret: must be a string, a SecretRef object, or an array of them",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: [] } } }",
            "webhooks.routes.r.secret: must not be an empty array",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: ['a', 1] } } }",
            "webhooks.routes.r.secret[1]: must be a string or a SecretRef object",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: 's', enabled: 'yes' } } }",
            "webhooks.routes.r.enabled: must be a boolean",
        ),
        (
            "{ routes: { r: { sessionKey: 7, secret: 's' } } }",
            "webhooks.routes.r.sessionKey: must be a string",
        ),
        (
            "{ routes: { r: { sessionKey: 'k', secret: 's', path: null } } }",
            "webhooks.routes.r.path: must be a string",
        ),
        (
            "{ routes: { r: 'nope' } }",
            "webhooks.routes.r: must be an object",
        ),
        ("{ routes: [] }", "webhooks.routes: must be an object"),
        ("{ limits: 5 }", "webhooks.limits: must be an object"),
        ("[1, 2]", "the configuration must be an object"),
        ("{ secrets: [] }", "secrets: must be an object"),
        (
            "{ secrets: { providers: 1 } }",
            "secrets.providers: must be an object",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn provider_validation() {
    let cases = [
        ("{ p: 1 }", "secrets.providers.p: must be an object"),
        ("{ p: {} }", "secrets.providers.p.source: is required"),
        (
            "{ p: { source: 'keychain' } }",
            r#"secrets.providers.p.source: must be "env", "file" or "exec""#,
        ),
        (
            "{ p: { source: 'env', allowlist: 'A' } }",
            "secrets.providers.p.allowlist: must be an array of strings",
        ),
        (
            "{ p: { source: 'file' } }",
            "secrets.providers.p.path: is required",
        ),
        (
            "{ p: { source: 'file', path: 'secrets.json' } }",
            "secrets.providers.p.path: must be an absolute path",
        ),
        (
            "{ p: { source: 'file', path: '/s.json', mode: 'yaml' } }",
            r#"secrets.providers.p.mode: must be "json" or "singleValue""#,
        ),
        (
            "{ p: { source: 'exec' } }",
            "secrets.providers.p.command: is required",
        ),
        (
            "{ p: { source: 'exec', command: 'bin/helper' } }",
            "secrets.providers.p.command: must be an absolute path",
        ),
        (
            "{ p: { source: 'exec', command: './helper' } }",
            "secrets.providers.p.command: must be an absolute path",
        ),
        (
            "{ p: { source: 'exec', command: '/h', args: '-x' } }",
            "secrets.providers.p.args: must be an array of strings",
        ),
        (
            "{ p: { source: 'exec', command: '/h', args: ['-x', 1] } }",
            "secrets.providers.p.args[1]: must be a string",
        ),
        (
            "{ p: { source: 'exec', command: '/h', timeoutMs: 0 } }",
            "secrets.providers.p.timeoutMs: must be an integer >= 1",
        ),
        (
            "{ p: { source: 'exec', command: '/h', timeoutMs: 2.5 } }",
            "secrets.providers.p.timeoutMs: must be an integer >= 1",
        ),
        (
            "{ p: { source: 'exec', command: '/h', timeoutMs: 4294967296 } }",
            "secrets.providers.p.timeoutMs: must be an integer from 1 to 4294967295",
        ),
        (
            "{ p: { source: 'exec', command: '/h', env: [] } }",
            "secrets.providers.p.env: must be an object",
        ),
        (
            "{ p: { source: 'exec', command: '/h', env: { A: 1 } } }",
            "secrets.providers.p.env.A: must be a string",
        ),
        (
            "{ p: { source: 'exec', command: '/h', env: { 'A=B': 'x' } } }",
            "secrets.providers.p.env.A=B: is not a valid variable name",
        ),
    ];
    for (providers, expected) in cases {
        assert_eq!(error(&one_route("'s'", providers)), expected, "{providers}");
    }
}

#[test]
fn parsed_providers() {
    let config = load(&one_route(
        "'s'",
        "{ e: { source: 'env', allowlist: ['A', 'B'] },
           f: { source: 'file', path: '/run/secrets.json' },
           g: { source: 'file', path: '/run/token', mode: 'singleValue' },
           x: { source: 'exec', command: '/usr/bin/helper', args: [' -v '], timeoutMs: 250, env: { VAULT_ADDR: 'http://v' } } }",
    ));
    let providers = config.providers();
    assert_eq!(
        providers.get("e"),
        Some(&SecretProvider::Env {
            allowlist: Some(vec!["A".into(), "B".into()])
        })
    );
    assert_eq!(
        providers.get("f"),
        Some(&SecretProvider::File {
            path: "/run/secrets.json".into(),
            mode: FileMode::Json
        })
    );
    assert!(matches!(
        providers.get("g"),
        Some(SecretProvider::File {
            mode: FileMode::SingleValue,
            ..
        })
    ));
    let Some(SecretProvider::Exec(exec)) = providers.get("x") else {
        panic!("exec provider expected")
    };
    assert_eq!(exec.command, Path::new("/usr/bin/helper"));
    assert_eq!(exec.args, [" -v "], "args are passed exactly as written");
    assert_eq!(exec.timeout.as_millis(), 250);
    assert_eq!(exec.env, [("VAULT_ADDR".to_owned(), "http://v".to_owned())]);
    assert_eq!(
        config.routes()[0].secret,
        [SecretInput::Plain(
            tower_webhooks::secret::Secret::new("s").unwrap()
        )]
    );
}

#[test]
fn secret_refs_parse() {
    let config = load(
        "{ routes: { r: { sessionKey: 'k', secret: { source: ' exec ', provider: ' vault ', id: ' db/pw ' } } } }",
    );
    let expected = SecretRef {
        source: SecretSource::Exec,
        provider: "vault".into(),
        id: "db/pw".into(),
    };
    assert_eq!(
        config.routes()[0].secret,
        [SecretInput::Ref(expected.clone())]
    );
    assert_eq!(expected.to_string(), "exec:vault:db/pw");
}

// ---------------------------------------------------------------------------------------------
// syntax and IO errors

#[test]
fn json5_syntax_errors_give_a_position() {
    let err = WebhooksConfig::from_json5("{\n  routes: {\n    a: { sessionKey 'k' }\n  }\n}")
        .unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("syntax error expected, got {err:?}")
    };
    assert_eq!(*line, Some(3));
    assert!(column.is_some());
    let text = err.to_string();
    assert!(
        text.starts_with("invalid JSON5 at line 3, column "),
        "{text}"
    );
}

#[test]
fn json5_features_are_accepted() {
    let config = load(
        "// comment\n{ /* block */ routes: { 'quoted-id': { sessionKey: \"k\", secret: 's', }, }, limits: { body: { maxBytes: 0x400 } }, }",
    );
    assert_eq!(config.routes()[0].id, "quoted-id");
    assert_eq!(config.limits().body.max_bytes, 1024);
}

#[test]
fn io_errors_name_the_file() {
    let dir = TempDir::new("io");
    let missing = dir.path().join("missing.json5");
    let err = WebhooksConfig::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot read config file {}: ", missing.display())),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn load_from_a_file_in_both_shapes() {
    let dir = TempDir::new("load");
    let plugin = dir.file(
        "plugin.json5",
        "{ routes: { a: { sessionKey: 'k', secret: 's' } } }",
        0o600,
    );
    assert_eq!(WebhooksConfig::load(&plugin).unwrap().routes()[0].id, "a");
    let whole = dir.file(
        "openclaw.json5",
        "{ plugins: { entries: { webhooks: { config: { routes: { b: { sessionKey: 'k', secret: 's' } } } } } } }",
        0o600,
    );
    assert_eq!(WebhooksConfig::load(&whole).unwrap().routes()[0].id, "b");

    let broken = dir.file("broken.json5", "{ routes: ", 0o600);
    let text = WebhooksConfig::load(&broken).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("{}: invalid JSON5", broken.display())),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// the two shapes

const WHOLE_FILE: &str = r#"{
  gateway: { port: 18789, auth: { token: "unrelated" } },
  agents: { list: [{ id: "main" }] },
  secrets: {
    defaults: { env: "default" },
    providers: { vault: { source: "exec", command: "/usr/local/bin/vault-helper" } },
  },
  plugins: {
    enabled: true,
    entries: {
      other: { enabled: true, config: { anything: [1, 2, 3] } },
      webhooks: {
        enabled: true,
        config: {
          routes: {
            zap: { sessionKey: "agent:main:main", secret: "whole-file-secret" },
          },
          limits: { inFlight: { maxPerKey: 2 } },
        },
      },
    },
  },
}"#;

#[test]
fn whole_openclaw_file() {
    let config = load(WHOLE_FILE);
    assert!(config.enabled());
    assert_eq!(config.routes().len(), 1);
    assert_eq!(config.routes()[0].path, "/plugins/webhooks/zap");
    assert_eq!(config.limits().in_flight.max_per_key, 2);
    assert!(matches!(
        config.providers().get("vault"),
        Some(SecretProvider::Exec(_))
    ));
    let resolved = config.resolve();
    assert_eq!(resolved.routes[0].secrets[0].expose(), "whole-file-secret");
}

#[test]
fn whole_file_with_the_plugin_disabled_has_no_routes() {
    let text = WHOLE_FILE.replace(
        "enabled: true,\n        config",
        "enabled: false,\n        config",
    );
    assert_ne!(text, WHOLE_FILE);
    let config = load(&text);
    assert!(!config.enabled());
    assert!(config.routes().is_empty());
    assert_eq!(config.limits(), &Limits::default());
    let resolved = config.resolve();
    assert!(resolved.routes.is_empty());
    assert!(resolved.skipped.is_empty());

    // A disabled plugin's config is not read at all, so a broken one does not stop the gateway.
    load("{ plugins: { entries: { webhooks: { enabled: false, config: { routes: 1 } } } } }");
}

#[test]
fn whole_file_without_the_plugin_has_no_routes() {
    for text in [
        "{ plugins: {} }",
        "{ plugins: { entries: {} } }",
        "{ plugins: { entries: { webhooks: {} } } }",
        "{ plugins: { entries: { webhooks: { enabled: true } } } }",
    ] {
        let config = load(text);
        assert!(config.enabled(), "{text}");
        assert!(config.routes().is_empty(), "{text}");
    }
}

#[test]
fn whole_file_shape_errors() {
    let cases = [
        ("{ plugins: [] }", "plugins: must be an object"),
        (
            "{ plugins: { entries: 1 } }",
            "plugins.entries: must be an object",
        ),
        (
            "{ plugins: { entries: { webhooks: 1 } } }",
            "plugins.entries.webhooks: must be an object",
        ),
        (
            "{ plugins: { entries: { webhooks: { enabled: 'no' } } } }",
            "plugins.entries.webhooks.enabled: must be a boolean",
        ),
        (
            "{ plugins: { entries: { webhooks: { config: [] } } } }",
            "webhooks: must be an object",
        ),
        (
            "{ plugins: { entries: { webhooks: { config: { routes: { r: { sessionKey: 'k' } } } } } } }",
            "webhooks.routes.r.secret: is required",
        ),
        (
            "{ plugins: { entries: { webhooks: { config: {} } } }, secrets: { providers: { p: { source: 'file', path: 'rel' } } } }",
            "secrets.providers.p.path: must be an absolute path",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
    // `routes` beside `plugins` would be ignored silently; it is an error instead.
    let text = error("{ plugins: {}, routes: { a: { sessionKey: 'k', secret: 's' } } }");
    assert!(
        text.starts_with("routes: belongs under plugins.entries.webhooks.config"),
        "{text}"
    );
    let text = error("{ plugins: {}, limits: {} }");
    assert!(text.starts_with("limits: belongs under"), "{text}");
}

#[test]
fn the_plugin_config_alone_may_carry_providers() {
    let config = load(&one_route(
        "{ source: 'file', provider: 'f', id: '/a' }",
        "{ f: { source: 'file', path: '/nonexistent/x.json' } }",
    ));
    assert!(config.providers().get("f").is_some());
}

// ---------------------------------------------------------------------------------------------
// env refs

fn env_ref(id: &str) -> String {
    format!("{{ source: 'env', provider: 'default', id: '{id}' }}")
}

#[test]
fn env_refs_resolve_trimmed() {
    set_env("TW_CFG_ENV_OK", "  env-secret-value \n");
    assert_eq!(
        resolve_one(&one_route(&env_ref("TW_CFG_ENV_OK"), "{}")).unwrap(),
        ["env-secret-value"]
    );
}

#[test]
fn env_refs_missing_or_empty_skip_the_route() {
    assert_eq!(
        skip_reason(&one_route(&env_ref("TW_CFG_ENV_NEVER_SET"), "{}")),
        "[webhooks] skipping route r: could not resolve \
         plugins.entries.webhooks.config.routes.r.secret (env:default:TW_CFG_ENV_NEVER_SET): \
         environment variable TW_CFG_ENV_NEVER_SET is not set"
    );
    set_env("TW_CFG_ENV_BLANK", " \t ");
    assert_eq!(
        skip_reason(&one_route(&env_ref("TW_CFG_ENV_BLANK"), "{}")),
        "[webhooks] skipping route r: could not resolve \
         plugins.entries.webhooks.config.routes.r.secret (env:default:TW_CFG_ENV_BLANK): \
         environment variable TW_CFG_ENV_BLANK is empty"
    );
}

#[test]
fn env_allowlist() {
    set_env("TW_CFG_ENV_ALLOWED", "allowed-value");
    set_env("TW_CFG_ENV_NOT_ALLOWED", "not-allowed-value");
    let providers = "{ default: { source: 'env', allowlist: ['TW_CFG_ENV_ALLOWED'] } }";
    assert_eq!(
        resolve_one(&one_route(&env_ref("TW_CFG_ENV_ALLOWED"), providers)).unwrap(),
        ["allowed-value"]
    );
    let reason = skip_reason(&one_route(&env_ref("TW_CFG_ENV_NOT_ALLOWED"), providers));
    assert_eq!(
        reason,
        "[webhooks] skipping route r: could not resolve \
         plugins.entries.webhooks.config.routes.r.secret (env:default:TW_CFG_ENV_NOT_ALLOWED): \
         environment variable TW_CFG_ENV_NOT_ALLOWED is not on the allowlist of secrets.providers.default"
    );
    assert!(!reason.contains("not-allowed-value"));

    // Without an allowlist any variable may be read, through any provider name.
    let no_list = "{ default: { source: 'env' } }";
    assert_eq!(
        resolve_one(&one_route(&env_ref("TW_CFG_ENV_NOT_ALLOWED"), no_list)).unwrap(),
        ["not-allowed-value"]
    );
    let other_name = "{ source: 'env', provider: 'elsewhere', id: 'TW_CFG_ENV_ALLOWED' }";
    assert_eq!(
        resolve_one(&one_route(other_name, "{}")).unwrap(),
        ["allowed-value"]
    );
}

#[test]
fn a_ref_to_a_provider_of_another_source_is_unresolved() {
    set_env("TW_CFG_ENV_WRONG_SOURCE", "v");
    let reason = skip_reason(&one_route(
        "{ source: 'env', provider: 'f', id: 'TW_CFG_ENV_WRONG_SOURCE' }",
        "{ f: { source: 'file', path: '/x' } }",
    ));
    assert!(
        reason.ends_with("secrets.providers.f is a file provider, not env"),
        "{reason}"
    );
    let reason = skip_reason(&one_route(
        "{ source: 'exec', provider: 'nope', id: 'k' }",
        "{}",
    ));
    assert!(
        reason.ends_with("no exec provider secrets.providers.nope is configured"),
        "{reason}"
    );
    let reason = skip_reason(&one_route(
        "{ source: 'file', provider: 'nope', id: '/k' }",
        "{}",
    ));
    assert!(
        reason.ends_with("no file provider secrets.providers.nope is configured"),
        "{reason}"
    );
}

#[test]
fn resolving_again_picks_up_rotated_secrets() {
    set_env("TW_CFG_ENV_ROTATE", "first-value");
    let config = load(&one_route(&env_ref("TW_CFG_ENV_ROTATE"), "{}"));
    assert_eq!(
        config.resolve().routes[0].secrets[0].expose(),
        "first-value"
    );
    set_env("TW_CFG_ENV_ROTATE", "second-value");
    assert_eq!(
        config.resolve().routes[0].secrets[0].expose(),
        "second-value"
    );
    // SAFETY: as in `set_env`.
    unsafe { std::env::remove_var("TW_CFG_ENV_ROTATE") };
    let resolved = config.resolve();
    assert!(resolved.routes.is_empty());
    assert_eq!(resolved.skipped.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// file refs

fn file_provider(path: &Path, mode: &str) -> String {
    format!(
        "{{ f: {{ source: 'file', path: '{}', mode: '{mode}' }} }}",
        path_str(path)
    )
}

fn file_ref(id: &str) -> String {
    format!("{{ source: 'file', provider: 'f', id: '{id}' }}")
}

#[test]
fn file_json_pointer_with_escapes() {
    let dir = TempDir::new("json");
    let file = dir.file(
        "secrets.json",
        r#"{ "a/b": { "c~d": "  pointer-secret  " }, "plain": "p", "n": 5, "blank": " " }"#,
        0o600,
    );
    let providers = file_provider(&file, "json");
    assert_eq!(
        resolve_one(&one_route(&file_ref("/a~1b/c~0d"), &providers)).unwrap(),
        ["pointer-secret"]
    );
    assert_eq!(
        resolve_one(&one_route(&file_ref("/plain"), &providers)).unwrap(),
        ["p"]
    );
    // `json` is the default mode.
    let default_mode = format!("{{ f: {{ source: 'file', path: '{}' }} }}", path_str(&file));
    assert_eq!(
        resolve_one(&one_route(&file_ref("/plain"), &default_mode)).unwrap(),
        ["p"]
    );

    let shown = file.display();
    for (id, tail) in [
        ("/missing", format!("{shown} has no value at /missing")),
        ("/a~1b/nope", format!("{shown} has no value at /a~1b/nope")),
        ("/a/b", format!("{shown} has no value at /a/b")),
        ("/n", format!("the value at /n in {shown} is not a string")),
        (
            "/a~1b",
            format!("the value at /a~1b in {shown} is not a string"),
        ),
        ("/blank", format!("the value at /blank in {shown} is empty")),
        (
            "plain",
            r#"id "plain" is not a JSON Pointer (it must start with /)"#.to_owned(),
        ),
    ] {
        let reason = skip_reason(&one_route(&file_ref(id), &providers));
        assert_eq!(
            reason,
            format!(
                "[webhooks] skipping route r: could not resolve \
                 plugins.entries.webhooks.config.routes.r.secret (file:f:{id}): {tail}"
            )
        );
    }
}

#[test]
fn file_json_must_be_a_json_object() {
    let dir = TempDir::new("notobj");
    let array = dir.file("a.json", r#"["x"]"#, 0o600);
    let reason = skip_reason(&one_route(&file_ref("/0"), &file_provider(&array, "json")));
    assert!(reason.ends_with("is not a JSON object"), "{reason}");
    let broken = dir.file("b.json", "{ \"a\": \"broken-json-secret\" ", 0o600);
    let reason = skip_reason(&one_route(&file_ref("/a"), &file_provider(&broken, "json")));
    assert!(reason.contains("is not valid JSON"), "{reason}");
    assert!(!reason.contains("broken-json-secret"), "{reason}");
}

#[test]
fn file_single_value() {
    let dir = TempDir::new("single");
    let file = dir.file("token", "single-value-secret\n", 0o600);
    let providers = file_provider(&file, "singleValue");
    assert_eq!(
        resolve_one(&one_route(&file_ref("value"), &providers)).unwrap(),
        ["single-value-secret"]
    );
    let crlf = dir.file("crlf", "crlf-secret\r\n", 0o400);
    assert_eq!(
        resolve_one(&one_route(
            &file_ref("value"),
            &file_provider(&crlf, "singleValue")
        ))
        .unwrap(),
        ["crlf-secret"]
    );
    let reason = skip_reason(&one_route(&file_ref("/value"), &providers));
    assert!(
        reason.ends_with(r#"a singleValue file provider only resolves the id "value""#),
        "{reason}"
    );
    let empty = dir.file("empty", "\n", 0o600);
    let reason = skip_reason(&one_route(
        &file_ref("value"),
        &file_provider(&empty, "singleValue"),
    ));
    assert!(
        reason.ends_with(&format!("{} is empty", empty.display())),
        "{reason}"
    );
}

#[test]
fn file_symlink_is_refused() {
    let dir = TempDir::new("symlink");
    let target = dir.file("real", "symlinked-secret", 0o600);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let reason = skip_reason(&one_route(
        &file_ref("value"),
        &file_provider(&link, "singleValue"),
    ));
    assert!(
        reason.ends_with(&format!(
            "refusing {}: it is a symbolic link",
            link.display()
        )),
        "{reason}"
    );
    // The target itself is fine: the refusal is about the link.
    assert_eq!(
        resolve_one(&one_route(
            &file_ref("value"),
            &file_provider(&target, "singleValue")
        ))
        .unwrap(),
        ["symlinked-secret"]
    );
}

#[test]
fn file_readable_by_group_or_others_is_refused() {
    let dir = TempDir::new("perm");
    for mode in [0o644, 0o640, 0o604] {
        let file = dir.file(&format!("f{mode:o}"), "perm-secret", mode);
        let reason = skip_reason(&one_route(
            &file_ref("value"),
            &file_provider(&file, "singleValue"),
        ));
        assert!(
            reason.ends_with(&format!(
                "refusing {}: it is readable by group or others (chmod 600 it)",
                file.display()
            )),
            "{mode:o}: {reason}"
        );
    }
}

#[test]
fn file_over_one_mebibyte_is_refused() {
    let dir = TempDir::new("big");
    let mut content = vec![b'a'; 1024 * 1024 + 1];
    let big = dir.file("big", &content, 0o600);
    let reason = skip_reason(&one_route(
        &file_ref("value"),
        &file_provider(&big, "singleValue"),
    ));
    assert!(
        reason.ends_with(&format!(
            "refusing {}: larger than 1048576 bytes",
            big.display()
        )),
        "{reason}"
    );
    // Exactly 1 MiB is allowed.
    content.pop();
    let limit = dir.file("limit", &content, 0o600);
    let secrets = resolve_one(&one_route(
        &file_ref("value"),
        &file_provider(&limit, "singleValue"),
    ))
    .unwrap();
    assert_eq!(secrets[0].len(), 1024 * 1024);
}

#[test]
fn file_missing_or_not_a_file() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("nope");
    let reason = skip_reason(&one_route(
        &file_ref("value"),
        &file_provider(&missing, "singleValue"),
    ));
    assert!(
        reason.contains(&format!("cannot read {}: ", missing.display())),
        "{reason}"
    );
    let reason = skip_reason(&one_route(
        &file_ref("value"),
        &file_provider(dir.path(), "singleValue"),
    ));
    assert!(reason.ends_with("not a regular file"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// exec refs

fn exec_provider(command: &Path, extra: &str) -> String {
    format!(
        "{{ x: {{ source: 'exec', command: '{}' {extra} }} }}",
        path_str(command)
    )
}

fn exec_ref(id: &str) -> String {
    format!("{{ source: 'exec', provider: 'x', id: '{id}' }}")
}

fn exec_reason_tail(command: &Path, what: &str) -> String {
    format!("exec provider {} {what}", command.display())
}

#[test]
fn exec_success_with_the_exact_request_on_stdin() {
    let dir = TempDir::new("exec-ok");
    let helper = dir.script(
        "helper",
        r#"IFS= read -r line || true
if [ "$line" = '{"protocolVersion":1,"provider":"x","ids":["db/token"]}' ]; then
  printf '%s' '{"protocolVersion":1,"values":{"db/token":"  exec-secret-1  ","other":"o"}}'
else
  exit 7
fi"#,
    );
    assert_eq!(
        resolve_one(&one_route(
            &exec_ref("db/token"),
            &exec_provider(&helper, "")
        ))
        .unwrap(),
        ["exec-secret-1"]
    );
}

#[test]
fn exec_errors_object_marks_an_id_unresolved() {
    let dir = TempDir::new("exec-errors");
    let helper = dir.script(
        "helper",
        r#"printf '%s' '{"protocolVersion":1,"values":{"k":"ignored-value"},"errors":{"k":{"message":"denied exec-error-detail"}}}'"#,
    );
    let reason = skip_reason(&one_route(&exec_ref("k"), &exec_provider(&helper, "")));
    assert_eq!(
        reason,
        format!(
            "[webhooks] skipping route r: could not resolve \
             plugins.entries.webhooks.config.routes.r.secret (exec:x:k): {}",
            exec_reason_tail(&helper, "reported an error for this id")
        )
    );
    assert!(!reason.contains("exec-error-detail"));
    assert!(!reason.contains("ignored-value"));

    // An error for a different id does not matter.
    let other = dir.script(
        "other",
        r#"printf '%s' '{"protocolVersion":1,"values":{"k":"fine"},"errors":{"j":"no"}}'"#,
    );
    assert_eq!(
        resolve_one(&one_route(&exec_ref("k"), &exec_provider(&other, ""))).unwrap(),
        ["fine"]
    );
}

#[test]
fn exec_bad_answers_are_unresolved() {
    let dir = TempDir::new("exec-bad");
    for (name, body, what) in [
        (
            "exit",
            r#"printf '%s' '{"protocolVersion":1,"values":{"k":"v"}}'; exit 3"#,
            "failed (exit status: 3)",
        ),
        (
            "notjson",
            "printf 'not json at all'",
            "printed invalid JSON",
        ),
        ("empty", "exit 0", "printed invalid JSON"),
        ("array", "printf '[1]'", "did not print a JSON object"),
        (
            "version",
            r#"printf '%s' '{"protocolVersion":2,"values":{"k":"v"}}'"#,
            "did not answer with protocolVersion 1",
        ),
        (
            "novalues",
            r#"printf '%s' '{"protocolVersion":1}'"#,
            "did not print a values object",
        ),
        (
            "noid",
            r#"printf '%s' '{"protocolVersion":1,"values":{"j":"v"}}'"#,
            "returned no value for this id",
        ),
        (
            "number",
            r#"printf '%s' '{"protocolVersion":1,"values":{"k":5}}'"#,
            "returned a value that is not a string",
        ),
        (
            "blank",
            r#"printf '%s' '{"protocolVersion":1,"values":{"k":"  "}}'"#,
            "returned an empty value",
        ),
    ] {
        let helper = dir.script(name, body);
        let reason = skip_reason(&one_route(&exec_ref("k"), &exec_provider(&helper, "")));
        assert!(
            reason.ends_with(&exec_reason_tail(&helper, what)),
            "{name}: {reason}"
        );
    }
}

#[test]
fn exec_timeout_kills_the_helper() {
    let dir = TempDir::new("exec-timeout");
    let pid_file = dir.path().join("pid");
    // `exec` keeps the PID: the sleeping process is the child we spawned.
    let helper = dir.script(
        "slow",
        &format!("echo $$ > '{}'\nexec /bin/sleep 30", path_str(&pid_file)),
    );
    let reason = skip_reason(&one_route(
        &exec_ref("k"),
        &exec_provider(&helper, ", timeoutMs: 200"),
    ));
    assert!(
        reason.ends_with(&exec_reason_tail(&helper, "timed out after 200 ms")),
        "{reason}"
    );
    // Killed and reaped, so its /proc entry is gone. (Under extreme load the helper may be killed
    // before it writes its PID; then there is nothing left to check.)
    if let Ok(pid) = fs::read_to_string(&pid_file) {
        let pid = pid.trim();
        if !pid.is_empty() && Path::new("/proc/self").exists() {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "helper {pid} is still running"
            );
        }
    }
}

#[test]
fn exec_output_over_one_mebibyte_is_unresolved() {
    let dir = TempDir::new("exec-big");
    let big = dir.file("big", vec![b' '; 1024 * 1024 + 10], 0o600);
    let helper = dir.script("big-helper", &format!("exec /bin/cat '{}'", path_str(&big)));
    let reason = skip_reason(&one_route(&exec_ref("k"), &exec_provider(&helper, "")));
    assert!(
        reason.ends_with(&exec_reason_tail(
            &helper,
            "printed more than 1048576 bytes"
        )),
        "{reason}"
    );
}

#[test]
fn exec_runs_without_a_shell() {
    let dir = TempDir::new("exec-noshell");
    let marker = dir.path().join("marker");
    let helper = dir.script(
        "echo-arg",
        r#"if [ $# -ne 2 ]; then exit 9; fi
printf '{"protocolVersion":1,"values":{"k":"%s|%s"}}' "$1" "$2""#,
    );
    // Through a shell, `;` would end the command and run `/bin/touch`, and `$(...)` would expand.
    let arg1 = format!("a; /bin/touch {}", path_str(&marker));
    let args = format!(", args: ['{arg1}', '$(/bin/echo b)']");
    assert_eq!(
        resolve_one(&one_route(&exec_ref("k"), &exec_provider(&helper, &args))).unwrap(),
        [format!("{arg1}|$(/bin/echo b)")]
    );
    assert!(!marker.exists());
}

#[test]
fn exec_gets_only_the_configured_environment() {
    let dir = TempDir::new("exec-env");
    set_env("TW_CFG_EXEC_PARENT_ONLY", "parent-value");
    let helper = dir.script(
        "env-helper",
        r#"if [ -n "${TW_CFG_EXEC_PARENT_ONLY:-}" ]; then exit 5; fi
printf '{"protocolVersion":1,"values":{"k":"%s"}}' "$GIVEN""#,
    );
    assert_eq!(
        resolve_one(&one_route(
            &exec_ref("k"),
            &exec_provider(&helper, ", env: { GIVEN: 'given-value' }")
        ))
        .unwrap(),
        ["given-value"]
    );
}

#[test]
fn exec_missing_command_is_unresolved() {
    let dir = TempDir::new("exec-missing");
    let missing = dir.path().join("no-such-helper");
    let reason = skip_reason(&one_route(&exec_ref("k"), &exec_provider(&missing, "")));
    assert!(
        reason.contains(&exec_reason_tail(&missing, "could not be started: ")),
        "{reason}"
    );
}

#[test]
fn exec_runs_once_per_ref_per_resolve() {
    let dir = TempDir::new("exec-once");
    let log = dir.path().join("calls");
    let helper = dir.script(
        "counting",
        &format!(
            r#"echo call >> '{}'
printf '%s' '{{"protocolVersion":1,"values":{{"k":"shared"}}}}'"#,
            path_str(&log)
        ),
    );
    let text = format!(
        "{{ routes: {{ a: {{ sessionKey: 'k', secret: {r} }}, b: {{ path: '/b', sessionKey: 'k', secret: [{r}, {r}] }} }}, \
         secrets: {{ providers: {p} }} }}",
        r = exec_ref("k"),
        p = exec_provider(&helper, "")
    );
    let resolved = load(&text).resolve();
    assert_eq!(resolved.routes.len(), 2);
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// several secrets, warnings

#[test]
fn arrays_of_secrets() {
    set_env("TW_CFG_ARRAY_NEW", "new-secret");
    let both = format!("['old-secret', {}]", env_ref("TW_CFG_ARRAY_NEW"));
    assert_eq!(
        resolve_one(&one_route(&both, "{}")).unwrap(),
        ["old-secret", "new-secret"]
    );
    // One unresolved candidate skips the route, naming its index.
    let broken = format!("['old-secret', {}]", env_ref("TW_CFG_ARRAY_UNSET"));
    assert_eq!(
        skip_reason(&one_route(&broken, "{}")),
        "[webhooks] skipping route r: could not resolve \
         plugins.entries.webhooks.config.routes.r.secret[1] (env:default:TW_CFG_ARRAY_UNSET): \
         environment variable TW_CFG_ARRAY_UNSET is not set"
    );
}

/// Captures what `tracing` prints on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn resolve_capturing_logs(
    config: &WebhooksConfig,
) -> (tower_webhooks::config::ResolvedConfig, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let resolved = tracing::subscriber::with_default(subscriber, || config.resolve());
    (resolved, captured.text())
}

#[test]
fn skipped_routes_are_warned_and_returned_while_others_start() {
    set_env("TW_CFG_WARN_OK", "ok-secret");
    let config = load(&format!(
        "{{ routes: {{
            first: {{ sessionKey: 'k', secret: {} }},
            broken: {{ sessionKey: 'k', secret: {} }},
            last: {{ sessionKey: 'k', secret: 'plain' }},
        }} }}",
        env_ref("TW_CFG_WARN_OK"),
        env_ref("TW_CFG_WARN_UNSET")
    ));
    let (resolved, logs) = resolve_capturing_logs(&config);
    let ids: Vec<_> = resolved.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["first", "last"]);
    let expected = "[webhooks] skipping route broken: could not resolve \
        plugins.entries.webhooks.config.routes.broken.secret (env:default:TW_CFG_WARN_UNSET): \
        environment variable TW_CFG_WARN_UNSET is not set";
    assert_eq!(resolved.warnings(), [expected]);
    assert_eq!(resolved.skipped[0].route_id, "broken");
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains(expected), "{logs}");
    assert_eq!(logs.lines().count(), 1, "{logs}");
}

// ---------------------------------------------------------------------------------------------
// limits

#[test]
fn limits_defaults() {
    let limits = Limits::default();
    assert_eq!(limits.rate_limit.window.as_millis(), 60_000);
    assert_eq!(limits.rate_limit.max_requests, 120);
    assert_eq!(limits.rate_limit.max_tracked_keys, 4_096);
    assert_eq!(limits.in_flight.max_per_key, 8);
    assert_eq!(limits.in_flight.max_tracked_keys, 4_096);
    assert_eq!(limits.body.max_bytes, 262_144);
    assert_eq!(limits.body.timeout.as_millis(), 15_000);
    assert_eq!(limits.auth_failures.max_failures, 20);
    assert_eq!(limits.auth_failures.window.as_millis(), 60_000);
    assert_eq!(limits.auth_failures.lockout.as_millis(), 60_000);
    assert!(limits.trusted_proxies.is_empty());
    assert_eq!(load("{ limits: {} }").limits(), &limits);
    assert_eq!(
        load("{ limits: { rateLimit: {}, inFlight: {}, body: {}, authFailures: {}, trustedProxies: [] } }")
            .limits(),
        &limits
    );
}

#[test]
fn limits_overrides() {
    let config = load(
        "{ limits: {
            rateLimit: { windowMs: 1000, maxRequests: 5, maxTrackedKeys: 10 },
            inFlight: { maxPerKey: 1, maxTrackedKeys: 2 },
            body: { maxBytes: 6e4, timeoutMs: 500.0 },
            authFailures: { max: 3, windowMs: 4, lockoutMs: 5 },
            trustedProxies: ['10.0.0.0/8', ' 192.168.1.1 ', '::1'],
        } }",
    );
    let limits = config.limits();
    assert_eq!(
        (
            limits.rate_limit.window.as_millis(),
            limits.rate_limit.max_requests,
            limits.rate_limit.max_tracked_keys
        ),
        (1000, 5, 10)
    );
    assert_eq!(
        (
            limits.in_flight.max_per_key,
            limits.in_flight.max_tracked_keys
        ),
        (1, 2)
    );
    assert_eq!(
        (limits.body.max_bytes, limits.body.timeout.as_millis()),
        (60_000, 500)
    );
    assert_eq!(
        (
            limits.auth_failures.max_failures,
            limits.auth_failures.window.as_millis(),
            limits.auth_failures.lockout.as_millis()
        ),
        (3, 4, 5)
    );
    let proxies = &limits.trusted_proxies;
    assert!(proxies.contains("10.1.2.3".parse().unwrap()));
    assert!(proxies.contains("192.168.1.1".parse().unwrap()));
    assert!(!proxies.contains("192.168.1.2".parse().unwrap()));
    assert!(proxies.contains("::1".parse().unwrap()));
    // Only the overridden field changes.
    let partial = load("{ limits: { rateLimit: { maxRequests: 7 } } }");
    assert_eq!(partial.limits().rate_limit.max_requests, 7);
    assert_eq!(partial.limits().rate_limit.window.as_millis(), 60_000);
    assert_eq!(partial.resolve().limits, *partial.limits());
}

#[test]
fn every_limit_rejects_bad_values() {
    let fields = [
        ("rateLimit", "windowMs"),
        ("rateLimit", "maxRequests"),
        ("rateLimit", "maxTrackedKeys"),
        ("inFlight", "maxPerKey"),
        ("inFlight", "maxTrackedKeys"),
        ("body", "maxBytes"),
        ("body", "timeoutMs"),
        ("authFailures", "max"),
        ("authFailures", "windowMs"),
        ("authFailures", "lockoutMs"),
    ];
    for (section, field) in fields {
        for bad in [
            "0",
            "-1",
            "1.5",
            "'10'",
            "true",
            "null",
            "[]",
            "{}",
            "-Infinity",
            "NaN",
        ] {
            assert_eq!(
                error(&format!(
                    "{{ limits: {{ {section}: {{ {field}: {bad} }} }} }}"
                )),
                format!("webhooks.limits.{section}.{field}: must be an integer >= 1"),
                "{section}.{field} = {bad}"
            );
        }
        // The smallest valid value.
        load(&format!("{{ limits: {{ {section}: {{ {field}: 1 }} }} }}"));
    }
    for section in ["rateLimit", "inFlight", "body", "authFailures"] {
        assert_eq!(
            error(&format!("{{ limits: {{ {section}: 1 }} }}")),
            format!("webhooks.limits.{section}: must be an object")
        );
    }
}

#[test]
fn limits_too_large_for_their_type() {
    for (section, field) in [
        ("rateLimit", "windowMs"),
        ("rateLimit", "maxRequests"),
        ("rateLimit", "maxTrackedKeys"),
        ("inFlight", "maxPerKey"),
        ("inFlight", "maxTrackedKeys"),
        ("body", "maxBytes"),
        ("body", "timeoutMs"),
        ("authFailures", "max"),
        ("authFailures", "windowMs"),
        ("authFailures", "lockoutMs"),
    ] {
        assert_eq!(
            error(&format!(
                "{{ limits: {{ {section}: {{ {field}: 4294967296 }} }} }}"
            )),
            format!("webhooks.limits.{section}.{field}: must be an integer from 1 to 4294967295")
        );
        load(&format!(
            "{{ limits: {{ {section}: {{ {field}: 4294967295 }} }} }}"
        ));
    }
}

#[test]
fn trusted_proxies_errors() {
    let cases = [
        (
            "'10.0.0.0/8'",
            "webhooks.limits.trustedProxies: must be an array of CIDR blocks",
        ),
        (
            "{}",
            "webhooks.limits.trustedProxies: must be an array of CIDR blocks",
        ),
        (
            "['10.0.0.0/8', 5]",
            "webhooks.limits.trustedProxies[1]: must be a string",
        ),
        (
            "['10.0.0.0/8', 'nope']",
            "webhooks.limits.trustedProxies[1]: invalid CIDR block or IP address `nope`",
        ),
        (
            "['10.0.0.0/33']",
            "webhooks.limits.trustedProxies[0]: invalid CIDR block or IP address `10.0.0.0/33`",
        ),
        (
            "['']",
            "webhooks.limits.trustedProxies[0]: invalid CIDR block or IP address ``",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(
            error(&format!("{{ limits: {{ trustedProxies: {value} }} }}")),
            expected,
            "{value}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// secrets never leak

#[test]
fn no_secret_value_in_errors_warnings_or_debug() {
    const PLAIN: &str = "leak-check-plain-7f3a";
    const ENV: &str = "leak-check-env-91bc";
    const FILE: &str = "leak-check-file-c0de";
    const EXEC: &str = "leak-check-exec-e5e5";
    const EXEC_ENV: &str = "leak-check-exec-env-4242";
    const ALL: [&str; 5] = [PLAIN, ENV, FILE, EXEC, EXEC_ENV];
    let assert_clean = |what: &str, text: &str| {
        for secret in ALL {
            assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
        }
    };

    set_env("TW_CFG_LEAK_ENV", ENV);
    let dir = TempDir::new("leak");
    let file = dir.file("s.json", format!(r#"{{ "k": "{FILE}" }}"#), 0o600);
    let world = dir.file("world.json", format!(r#"{{ "k": "{FILE}" }}"#), 0o644);
    let helper = dir.script(
        "helper",
        &format!(
            r#"printf '%s' '{{"protocolVersion":1,"values":{{"k":"{EXEC}","bad":5}},"errors":{{"e":"{EXEC}"}}}}'"#
        ),
    );
    let text = format!(
        "{{ routes: {{
            plain: {{ sessionKey: 'k', secret: '{PLAIN}' }},
            env: {{ sessionKey: 'k', secret: {env} }},
            file: {{ sessionKey: 'k', secret: {{ source: 'file', provider: 'f', id: '/k' }} }},
            exec: {{ sessionKey: 'k', secret: {{ source: 'exec', provider: 'x', id: 'k' }} }},
            filebad: {{ sessionKey: 'k', secret: {{ source: 'file', provider: 'f', id: '/nope' }} }},
            fileworld: {{ sessionKey: 'k', secret: {{ source: 'file', provider: 'w', id: '/k' }} }},
            execbad: {{ sessionKey: 'k', secret: {{ source: 'exec', provider: 'x', id: 'bad' }} }},
            execerr: {{ sessionKey: 'k', secret: {{ source: 'exec', provider: 'x', id: 'e' }} }},
        }}, secrets: {{ providers: {{
            f: {{ source: 'file', path: '{file}' }},
            w: {{ source: 'file', path: '{world}' }},
            x: {{ source: 'exec', command: '{helper}', env: {{ TOKEN: '{EXEC_ENV}' }} }},
        }} }} }}",
        env = env_ref("TW_CFG_LEAK_ENV"),
        file = path_str(&file),
        world = path_str(&world),
        helper = path_str(&helper),
    );
    let config = load(&text);
    assert_clean("config Debug", &format!("{config:?}"));
    assert_clean("config pretty Debug", &format!("{config:#?}"));
    let (resolved, logs) = resolve_capturing_logs(&config);
    let ids: Vec<_> = resolved.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["plain", "env", "file", "exec"]);
    let values: Vec<_> = resolved
        .routes
        .iter()
        .map(|r| r.secrets[0].expose())
        .collect();
    assert_eq!(values, [PLAIN, ENV, FILE, EXEC], "the secrets did resolve");
    assert_eq!(resolved.skipped.len(), 4);
    assert_clean("resolved Debug", &format!("{resolved:#?}"));
    assert_clean("warnings", &resolved.warnings().join("\n"));
    assert_clean("logs", &logs);
    assert_eq!(logs.lines().count(), 4, "{logs}");

    // Errors: a secret near a mistake is not quoted, whether the mistake is in syntax or schema.
    for broken in [
        text.replace(
            &format!("secret: '{PLAIN}' }}"),
            &format!("secret: '{PLAIN}' bogus }}"),
        ),
        text.replace(
            &format!("secret: '{PLAIN}' }}"),
            &format!("secret: '{PLAIN}', x: 1 }}"),
        ),
        text.replace(
            &format!("secret: '{PLAIN}' }}"),
            &format!("secret: ['{PLAIN}', 7] }}"),
        ),
        text.replace("plain: {", "plain: { path: '/plugins/webhooks/env', "),
        format!("{{ routes: {{ r: {{ sessionKey: 'k', secret: '{PLAIN}\n }} }} }}"),
        format!(
            "{{ limits: {{ trustedProxies: 7 }}, routes: {{ r: {{ sessionKey: 'k', secret: '{PLAIN}' }} }} }}"
        ),
        format!(
            "{{ routes: {{ r: {{ sessionKey: 'k', secret: {{ source: 'env', provider: 'p', id: 'X', value: '{PLAIN}' }} }} }} }}"
        ),
        format!(
            "{{ routes: {{ r: {{ sessionKey: 'k', childSessions: '{PLAIN}', secret: 's' }} }} }}"
        ),
    ] {
        let err = WebhooksConfig::from_json5(&broken).unwrap_err();
        assert_clean("error Display", &err.to_string());
        assert_clean("error Debug", &format!("{err:?}"));
    }
}
