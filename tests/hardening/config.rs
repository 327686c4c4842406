//! JSON5 text through `WebhooksConfig::from_json5`, `resolve` and the pipeline builder (SPEC §1,
//! §1.2, §2.5).
//!
//! The text is the input as it is, a known-good route whose plain secret is a canary followed by
//! the input (so a syntax error sits on the canary's line, where a parser that quotes the offending
//! line would leak it), or a configuration generated from the input's choices: routes with every
//! field kept, dropped or broken, plain secrets and env/file/exec refs, providers, limits with
//! out-of-range numbers, both file shapes, sometimes with bytes spliced into the text.
//!
//! Required of every text:
//!
//! - no panic, whatever the text;
//! - no secret value in any error, `Debug` output, skip reason or warning: not the canaries (a
//!   plain secret, an environment variable's value, a file's content) unless the text itself
//!   spells them out, and not any plain secret written in the text unless the same output still
//!   shows it once every plain secret is replaced by `X` (then it is there as a key or an id);
//! - a loaded configuration is normalised: trimmed ids and session keys, paths starting with `/`,
//!   no two enabled routes on one path, every limit in `1..=u32::MAX`;
//! - resolving accounts for every enabled route, in file order, and a resolved secret is the
//!   plain value or what its ref resolves to;
//! - a pipeline builds from any loaded limits and resolved routes.
//!
//! Resolution is guarded: an `exec` ref is never run, and a `file` ref is read only inside this
//! harness's own directory. Such a configuration is still loaded and checked; only the refs that
//! are safe to resolve are resolved, one by one.

use std::path::PathBuf;
use std::sync::{Mutex, Once};

use serde_json::{Map, Value, json};
use tower_webhooks::{
    WebhookPipeline, WebhooksConfig,
    config::{ConfigError, Limits, SecretInput, SecretProvider, SecretRef, SecretSource},
};

use super::{Input, Outcome};

/// A plain secret the generated configurations use; never allowed in any output.
pub const CANARY_PLAIN: &str = "cfg-canary-plain-Q7v2";
/// The value of [`CANARY_VAR`].
pub const CANARY_ENV: &str = "cfg-canary-env-W3k8";
/// The secret inside the harness's secret files.
pub const CANARY_FILE: &str = "cfg-canary-file-M5p1";
/// An environment variable the harness sets to [`CANARY_ENV`].
pub const CANARY_VAR: &str = "TOWER_WEBHOOKS_HARDENING_CANARY";
/// Stands for the harness's directory in generated or fuzzed text.
pub const DIR_PLACEHOLDER: &str = "$DIR";

/// The harness's directory of secret files: `json` (mode 600, `{"k": …, "n": 1, "e": ""}`),
/// `single` (mode 600, the canary and a newline) and `open` (mode 644, refused).
pub fn sandbox_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tower-webhooks-hardening-{}", std::process::id()))
}

static USERS: Mutex<usize> = Mutex::new(0);

/// Keeps the sandbox directory alive; the last one dropped removes it.
#[derive(Debug)]
pub struct Sandbox(());

/// Creates the sandbox directory and files if nobody holds them, and sets [`CANARY_VAR`].
pub fn sandbox() -> Sandbox {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    if *users == 0 {
        static ENV: Once = Once::new();
        // SAFETY: set once, before any check reads it; nothing else in these test and fuzz
        // binaries reads or writes this variable, and no C code calls getenv concurrently.
        #[allow(unsafe_code)]
        ENV.call_once(|| unsafe { std::env::set_var(CANARY_VAR, format!("  {CANARY_ENV}\n")) });
        let dir = sandbox_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the sandbox directory");
        let write = |name: &str, content: String, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write a sandbox file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod a sandbox file");
            }
            #[cfg(not(unix))]
            let _ = mode;
        };
        let json = json!({"k": CANARY_FILE, "n": 1, "e": "", "a/b": {"~": CANARY_FILE}});
        write("json", json.to_string(), 0o600);
        write("single", format!("{CANARY_FILE}\n"), 0o600);
        write("open", json.to_string(), 0o644);
    }
    *users += 1;
    Sandbox(())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = std::fs::remove_dir_all(sandbox_dir());
        }
    }
}

// ---------------------------------------------------------------------- generation

fn pick_value(input: &mut Input<'_>, pool: &[Value]) -> Value {
    input.pick(pool).clone()
}

fn secret_input(input: &mut Input<'_>) -> Value {
    let env = |id: &str| json!({"source": "env", "provider": "default", "id": id});
    match input.below(16) {
        0 | 1 => CANARY_PLAIN.into(),
        2 => format!("  {CANARY_PLAIN}\t").into(),
        3 => env(CANARY_VAR),
        4 => env("TOWER_WEBHOOKS_HARDENING_UNSET"),
        5 => json!({"source": "env", "provider": "allow", "id": CANARY_VAR}),
        6 => {
            json!({"source": "file", "provider": "f", "id": input.pick(&["/k", "/n", "/e", "/a~1b/~0", "k", "/missing"])})
        }
        7 => {
            json!({"source": "file", "provider": input.pick(&["single", "open", "f", "nope"]), "id": input.pick(&["value", "/k"])})
        }
        8 => json!({"source": "exec", "provider": "x", "id": "k"}),
        9 => {
            json!({"source": "env", "provider": "default", "id": CANARY_VAR, "value": CANARY_PLAIN})
        }
        10 => {
            json!({"source": input.pick(&["vault", "ENV", ""]), "provider": "default", "id": "k"})
        }
        11 => json!({"source": "env", "id": "k"}),
        12 => pick_value(
            input,
            &[
                json!(""),
                json!("   "),
                json!(7),
                json!(null),
                json!([]),
                json!({}),
            ],
        ),
        _ => {
            let n = input.below(3) + 1;
            Value::Array((0..n).map(|_| secret_input(input)).collect())
        }
    }
}

fn route(input: &mut Input<'_>) -> Value {
    let mut map = Map::new();
    let mut maybe = |input: &mut Input<'_>, key: &str, pool: &[Value]| {
        if input.chance(3) {
            map.insert(key.to_owned(), input.pick(pool).clone());
        }
    };
    maybe(input, "enabled", &[json!(true), json!(false), json!("yes")]);
    maybe(
        input,
        "path",
        &[
            json!("/hook"),
            json!("hook/"),
            json!(" /hook "),
            json!("/hook//"),
            json!("/Hook"),
            json!(""),
            json!("  "),
            json!("/"),
            json!(3),
        ],
    );
    maybe(input, "controllerId", &[json!("ctl"), json!(""), json!(1)]);
    maybe(
        input,
        "description",
        &[json!("note"), json!(""), json!(null)],
    );
    maybe(
        input,
        "childSessions",
        &[
            json!("same-agent"),
            json!("descendant"),
            json!(" any "),
            json!(CANARY_PLAIN),
            json!(["agent:main:"]),
            json!([]),
            json!([""]),
            json!(7),
        ],
    );
    if input.below(12) != 0 {
        let key = input
            .pick(&[
                json!("agent:main:main"),
                json!("  agent:ops:x "),
                json!(""),
                json!(5),
            ])
            .clone();
        map.insert("sessionKey".into(), key);
    }
    if input.below(12) != 0 {
        map.insert("secret".into(), secret_input(input));
    }
    if input.below(12) == 0 {
        map.insert(
            (*input.pick(&["Secret", "session_key", "token"])).into(),
            "v".into(),
        );
    }
    Value::Object(map)
}

fn limit_number(input: &mut Input<'_>) -> Value {
    pick_value(
        input,
        &[
            json!(1),
            json!(60_000),
            json!(6e4),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(4_294_967_295u64),
            json!(4_294_967_296u64),
            json!(u64::MAX),
            json!(1e300),
            json!("10"),
            json!(null),
        ],
    )
}

fn limits(input: &mut Input<'_>) -> Value {
    let sections: [(&str, &[&str]); 4] = [
        ("rateLimit", &["windowMs", "maxRequests", "maxTrackedKeys"]),
        ("inFlight", &["maxPerKey", "maxTrackedKeys"]),
        ("body", &["maxBytes", "timeoutMs"]),
        ("authFailures", &["max", "windowMs", "lockoutMs"]),
    ];
    let mut map = Map::new();
    for (section, keys) in sections {
        if input.chance(3) {
            let mut fields = Map::new();
            for key in keys {
                if input.chance(4) {
                    fields.insert((*key).to_owned(), limit_number(input));
                }
            }
            if input.below(16) == 0 {
                fields.insert("burst".into(), json!(1));
            }
            map.insert(section.to_owned(), Value::Object(fields));
        }
    }
    if input.chance(2) {
        let entries: Vec<Value> = (0..input.below(3))
            .map(|_| {
                pick_value(
                    input,
                    &[
                        json!("10.0.0.0/8"),
                        json!("::1"),
                        json!(" 192.168.0.1 "),
                        json!("10.0.0.0/99"),
                        json!("nope"),
                        json!(7),
                    ],
                )
            })
            .collect();
        map.insert("trustedProxies".into(), Value::Array(entries));
    }
    Value::Object(map)
}

fn providers(input: &mut Input<'_>) -> Value {
    let dir = DIR_PLACEHOLDER;
    let mut map = Map::new();
    let all = [
        (
            "f",
            json!({"source": "file", "path": format!("{dir}/json")}),
        ),
        (
            "single",
            json!({"source": "file", "path": format!("{dir}/single"), "mode": "singleValue"}),
        ),
        (
            "open",
            json!({"source": "file", "path": format!("{dir}/open")}),
        ),
        ("allow", json!({"source": "env", "allowlist": [CANARY_VAR]})),
        (
            "x",
            json!({"source": "exec", "command": "/bin/false", "env": {"TOKEN": CANARY_PLAIN}}),
        ),
        ("rel", json!({"source": "file", "path": "relative/path"})),
        (
            "bad",
            json!({"source": "env", "allowlist": [""], "extra": 1}),
        ),
    ];
    for (name, provider) in all {
        if input.chance(4) {
            map.insert(name.to_owned(), provider);
        }
    }
    Value::Object(map)
}

/// A configuration from the input's choices, in either file shape.
pub fn generate(input: &mut Input<'_>) -> Value {
    let mut routes = Map::new();
    for _ in 0..input.below(4) {
        let id = *input.pick(&["a", "b", " a ", "zap", "", "ключ"]);
        routes.insert(id.to_owned(), route(input));
    }
    let mut plugin = Map::new();
    if input.below(10) != 0 {
        plugin.insert("routes".into(), Value::Object(routes));
    }
    if input.chance(3) {
        plugin.insert("limits".into(), limits(input));
    }
    let secrets = json!({"providers": providers(input)});
    match input.below(4) {
        0 => json!({
            "plugins": {"entries": {"webhooks": {
                "enabled": input.pick(&[json!(true), json!(false), json!("no")]).clone(),
                "config": Value::Object(plugin),
            }}},
            "secrets": secrets,
            "gateway": {"port": 1},
        }),
        _ => {
            if input.below(4) != 0 {
                plugin.insert("secrets".into(), secrets);
            }
            Value::Object(plugin)
        }
    }
}

/// The text a check runs on, and the canaries it must not show: the input as text (mode 0), a
/// route with the plain canary followed by the input (mode 1), or a generated configuration,
/// possibly with bytes spliced in (modes 2 and 3).
pub fn text_from(data: &[u8]) -> (String, Vec<&'static str>) {
    let mut input = Input::new(data);
    let dir = sandbox_dir().to_string_lossy().into_owned();
    let fill = |text: &str| text.replace(DIR_PLACEHOLDER, &dir);
    let mut canaries = vec![CANARY_ENV, CANARY_FILE];
    // What came from the input as it is: a canary it spells out may legitimately come back (as a
    // key, say). Generated text uses the plain canary only where a secret goes.
    let text = match input.below(4) {
        0 => {
            let text = fill(&String::from_utf8_lossy(input.rest()));
            canaries.retain(|canary| !text.contains(canary));
            text
        }
        1 => {
            let tail = fill(&String::from_utf8_lossy(input.rest()));
            canaries.push(CANARY_PLAIN);
            canaries.retain(|canary| !tail.contains(canary));
            format!(
                "{{ routes: {{ a: {{ sessionKey: 'agent:main:a', secret: '{CANARY_PLAIN}', {tail} }} }} }}"
            )
        }
        mode => {
            canaries.push(CANARY_PLAIN);
            let mut text = fill(&generate(&mut input).to_string());
            if mode == 3 {
                let at = input.below(text.len() + 1);
                let at = (0..=at)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                let splice = String::from_utf8_lossy(input.bytes(6)).into_owned();
                canaries.retain(|canary| !splice.contains(canary));
                text.insert_str(at, &splice);
            }
            text
        }
    };
    (text, canaries)
}

// ---------------------------------------------------------------------- the check

/// The plugin config object inside either shape, if the value has one.
fn plugin_config(value: &mut Value) -> Option<&mut Value> {
    if value.get("plugins").is_some() {
        value.pointer_mut("/plugins/entries/webhooks/config")
    } else {
        Some(value)
    }
}

/// The plain secrets written at secret positions (`routes.<id>.secret`, or an element of it),
/// trimmed, at least 6 bytes long. With `replace`, they are replaced by `X`.
fn plain_secrets(value: &mut Value, replace: bool) -> Vec<String> {
    let mut found = Vec::new();
    let Some(Value::Object(routes)) = plugin_config(value).and_then(|c| c.get_mut("routes")) else {
        return found;
    };
    for route in routes.values_mut() {
        let Some(secret) = route.get_mut("secret") else {
            continue;
        };
        let slots: Vec<&mut Value> = match secret {
            Value::Array(items) => items.iter_mut().collect(),
            other => vec![other],
        };
        for slot in slots {
            if let Value::String(s) = slot {
                if js_trim(s).len() >= 6 {
                    found.push(js_trim(s).to_owned());
                }
                if replace && !js_trim(s).is_empty() {
                    *s = "X".into();
                }
            }
        }
    }
    found
}

/// Trimmed as JavaScript's `trim` does, as the loader trims (SPEC §1): Unicode White_Space without
/// U+0085, plus the byte-order mark U+FEFF.
fn js_trim(s: &str) -> &str {
    s.trim_matches(|c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}')
}

fn error_text(error: &ConfigError) -> String {
    format!("{error}\n{error:?}")
}

/// No canary in `text`, and no plain secret of `secrets` unless `without` (the same output for the
/// configuration with every plain secret replaced) shows it too.
fn no_leak(
    what: &str,
    text: &str,
    canaries: &[&str],
    secrets: &[String],
    without: &mut dyn FnMut() -> String,
) -> Outcome {
    for canary in canaries {
        ensure!(
            !text.contains(canary),
            "{what} shows the secret {canary}: {text}"
        );
    }
    let mut clean: Option<String> = None;
    for secret in secrets {
        if text.contains(secret.as_str()) {
            let clean = clean.get_or_insert_with(&mut *without);
            ensure!(
                clean.contains(secret.as_str()),
                "{what} shows the plain secret {secret:?}: {text}"
            );
        }
    }
    Ok(())
}

fn check_loaded(config: &WebhooksConfig) -> Outcome {
    let mut enabled_paths: Vec<&str> = Vec::new();
    for route in config.routes() {
        ensure!(
            !route.id.is_empty() && js_trim(&route.id) == route.id,
            "route id {:?}",
            route.id
        );
        ensure!(
            !route.session_key.is_empty() && js_trim(&route.session_key) == route.session_key,
            "session key of {}",
            route.id
        );
        // Not `normalize(path) == path`: normalising removes exactly one trailing `/` [compat],
        // so `/hook//` is served at `/hook/`, which a second pass would change again.
        ensure!(
            route.path.starts_with('/'),
            "path {:?} of {} does not start with /",
            route.path,
            route.id
        );
        ensure!(!route.secret.is_empty(), "route {} has no secret", route.id);
        if route.enabled {
            ensure!(
                !enabled_paths.contains(&route.path.as_str()),
                "two enabled routes on {}",
                route.path
            );
            enabled_paths.push(&route.path);
        }
    }
    let l = config.limits();
    let max = u64::from(u32::MAX);
    let numbers = [
        l.rate_limit.window.as_millis() as u64,
        u64::from(l.rate_limit.max_requests),
        l.rate_limit.max_tracked_keys as u64,
        u64::from(l.in_flight.max_per_key),
        l.in_flight.max_tracked_keys as u64,
        l.body.max_bytes as u64,
        l.body.timeout.as_millis() as u64,
        u64::from(l.auth_failures.max_failures),
        l.auth_failures.window.as_millis() as u64,
        l.auth_failures.lockout.as_millis() as u64,
    ];
    ensure!(
        numbers.iter().all(|n| (1..=max).contains(n)),
        "a limit out of range: {numbers:?}"
    );
    if !config.enabled() {
        ensure!(
            config.routes().is_empty() && *config.limits() == Limits::default(),
            "a disabled plugin still has routes or limits"
        );
    }
    Ok(())
}

/// Whether resolving `reference` is harmless here: never an `exec` helper, and files only inside
/// the sandbox.
fn safe_to_resolve(config: &WebhooksConfig, reference: &SecretRef) -> bool {
    match (
        reference.source,
        config.providers().get(&reference.provider),
    ) {
        (SecretSource::Exec, Some(SecretProvider::Exec(_))) => false,
        (SecretSource::File, Some(SecretProvider::File { path, .. })) => {
            path.starts_with(sandbox_dir())
        }
        _ => true,
    }
}

fn refs(config: &WebhooksConfig) -> impl Iterator<Item = &SecretRef> {
    config
        .routes()
        .iter()
        .filter(|r| r.enabled)
        .flat_map(|r| r.secret.iter())
        .filter_map(|s| match s {
            SecretInput::Ref(r) => Some(r),
            SecretInput::Plain(_) => None,
        })
}

fn check_resolved(
    config: &WebhooksConfig,
    canaries: &[&str],
    secrets: &[String],
    replaced: &mut dyn FnMut() -> Option<WebhooksConfig>,
) -> Outcome {
    if !refs(config).all(|r| safe_to_resolve(config, r)) {
        for reference in refs(config).filter(|r| safe_to_resolve(config, r)) {
            if let Err(why) = config.providers().resolve(reference) {
                no_leak(
                    "an unresolved ref",
                    &why.to_string(),
                    canaries,
                    &[],
                    &mut String::new,
                )?;
            }
        }
        return Ok(());
    }
    let resolved = config.resolve();
    let enabled: Vec<&str> = config
        .routes()
        .iter()
        .filter(|r| r.enabled)
        .map(|r| r.id.as_str())
        .collect();
    let mut accounted: Vec<&str> = resolved.routes.iter().map(|r| r.id.as_str()).collect();
    accounted.extend(resolved.skipped.iter().map(|s| s.route_id.as_str()));
    accounted.sort_by_key(|id| enabled.iter().position(|e| e == id));
    ensure!(
        accounted == enabled,
        "resolved {accounted:?}, enabled {enabled:?}"
    );
    let in_order = |ids: Vec<&str>| {
        ids.windows(2).all(|w| {
            enabled.iter().position(|e| *e == w[0]) < enabled.iter().position(|e| *e == w[1])
        })
    };
    ensure!(
        in_order(resolved.routes.iter().map(|r| r.id.as_str()).collect()),
        "resolved routes out of file order"
    );
    for served in &resolved.routes {
        let route = config
            .routes()
            .iter()
            .find(|r| r.id == served.id)
            .ok_or("a resolved route that is not configured")?;
        ensure!(
            served.secrets.len() == route.secret.len()
                && served.path == route.path
                && served.session_key == route.session_key,
            "resolved route {} differs from its configuration",
            served.id
        );
        for (input, secret) in route.secret.iter().zip(&served.secrets) {
            let expected = match input {
                SecretInput::Plain(plain) => plain.clone(),
                SecretInput::Ref(r) => config
                    .providers()
                    .resolve(r)
                    .map_err(|_| format!("{r} resolved once, then not"))?,
            };
            ensure!(
                secret.expose() == expected.expose(),
                "route {} resolved a different secret",
                served.id
            );
        }
    }
    let shown = format!("{resolved:?}\n{}", resolved.warnings().join("\n"));
    no_leak("resolving", &shown, canaries, secrets, &mut || {
        replaced().map_or_else(String::new, |c| {
            let r = c.resolve();
            format!("{r:?}\n{}", r.warnings().join("\n"))
        })
    })?;
    // Any loaded limits and resolved routes build a pipeline.
    let pipeline = WebhookPipeline::in_memory(resolved.limits.clone());
    let router = pipeline.router(&resolved.routes);
    ensure!(
        format!("{router:?}").len() < 1 << 20,
        "an absurd router Debug"
    );
    Ok(())
}

/// Loads `text` and checks everything above; `canaries` must appear in no output.
pub fn check_text(text: &str, canaries: &[&str]) -> Outcome {
    let loaded = WebhooksConfig::from_json5(text);
    // Too deep for the loader is refused before parsing; parsing it here could overflow the stack.
    if let Err(error @ ConfigError::TooDeep { .. }) = &loaded {
        return no_leak(
            "a nesting error",
            &error_text(error),
            canaries,
            &[],
            &mut String::new,
        );
    }
    let parsed: Option<Value> = json5::from_str(text).ok();
    let secrets = parsed
        .clone()
        .map_or_else(Vec::new, |mut v| plain_secrets(&mut v, false));
    let replaced_value = || {
        parsed.clone().map(|mut v| {
            plain_secrets(&mut v, true);
            v
        })
    };
    match loaded {
        Err(error) => {
            ensure!(
                matches!(error, ConfigError::Syntax { .. }) == parsed.is_none(),
                "a syntax error for text json5 parses, or the reverse: {error}"
            );
            if let ConfigError::Syntax { message, .. } = &error {
                ensure!(
                    !message.contains('\n'),
                    "a syntax error quotes the source: {message:?}"
                );
            }
            no_leak(
                "an error",
                &error_text(&error),
                canaries,
                &secrets,
                &mut || {
                    replaced_value()
                        .map(|v| match WebhooksConfig::from_value(&v) {
                            Ok(c) => format!("{c:?}"),
                            Err(e) => error_text(&e),
                        })
                        .unwrap_or_default()
                },
            )
        }
        Ok(config) => {
            let mut replaced =
                || replaced_value().and_then(|v| WebhooksConfig::from_value(&v).ok());
            let shown = format!("{config:?}\n{config:#?}");
            no_leak(
                "the configuration's Debug",
                &shown,
                canaries,
                &secrets,
                &mut || {
                    replaced()
                        .map(|c| format!("{c:?}\n{c:#?}"))
                        .unwrap_or_default()
                },
            )?;
            check_loaded(&config)?;
            check_resolved(&config, canaries, &secrets, &mut replaced)
        }
    }
}

/// One check from raw bytes (see [`text_from`]).
pub fn check(data: &[u8]) -> Outcome {
    let _files = sandbox();
    let (text, canaries) = text_from(data);
    check_text(&text, &canaries).map_err(|e| format!("{e}\n--- text:\n{text}"))
}
