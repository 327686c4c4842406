//! SecretRefs (SPEC §1.2) and their resolution through `secrets.providers`.
//!
//! Resolution is synchronous: it runs at startup and on reload, never per request, and a blocking
//! API is the easiest to call from a signal handler loop or a `spawn_blocking`. An `exec` provider is
//! run with [`std::process::Command`] (no shell), fed on stdin from a thread and read from a thread,
//! so a helper that never reads its input or never closes its output cannot outlive `timeoutMs`.
//!
//! On Unix the helper leads a process group of its own, and a helper that fails (timeout, unreadable
//! or oversized output) is killed with that whole group: a shell wrapper's children share its stdout,
//! and killing the shell alone would leave them running and the reader thread blocked on the pipe
//! they hold open. A process that leaves the group on purpose (`setsid`) is out of reach.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ConfigError;
use super::value::{
    Object, deny_unknown, index, join, js_trim, object, positive_int, req_string, string,
};
use crate::secret::Secret;

/// The most a secret file may hold, and the most an `exec` provider may print: 1 MiB.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// The `exec` provider timeout when `timeoutMs` is not set.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_millis(5_000);

/// Where a [`SecretRef`] is resolved from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretSource {
    /// An environment variable of this process.
    Env,
    /// A file, through a `file` provider.
    File,
    /// A helper program, through an `exec` provider.
    Exec,
}

impl SecretSource {
    /// The configuration spelling: `env`, `file` or `exec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::File => "file",
            Self::Exec => "exec",
        }
    }

    fn parse(value: &Value, path: &str) -> Result<Self, ConfigError> {
        match value.as_str().map(js_trim) {
            Some("env") => Ok(Self::Env),
            Some("file") => Ok(Self::File),
            Some("exec") => Ok(Self::Exec),
            _ => Err(ConfigError::invalid(
                path,
                r#"must be "env", "file" or "exec""#,
            )),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{ source, provider, id }`: where to find a secret, not the secret itself.
///
/// `Display` gives `source:provider:id`, the form used in warnings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// Where to look.
    pub source: SecretSource,
    /// The provider name under `secrets.providers` (normally `default` for `env`).
    pub provider: String,
    /// The variable name, JSON Pointer, `value`, or id passed to the helper.
    pub id: String,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.provider, self.id)
    }
}

impl SecretRef {
    fn from_object(map: &Object, path: &str) -> Result<Self, ConfigError> {
        deny_unknown(map, path, &["source", "provider", "id"])?;
        let source = match map.get("source") {
            Some(v) => SecretSource::parse(v, &join(path, "source"))?,
            None => return Err(ConfigError::invalid(join(path, "source"), "is required")),
        };
        Ok(Self {
            source,
            provider: req_string(map, "provider", path)?,
            id: req_string(map, "id", path)?,
        })
    }
}

/// One configured secret: a literal or a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretInput {
    /// A secret written in the configuration (already trimmed and non-empty).
    Plain(Secret),
    /// A reference resolved when the route set is built.
    Ref(SecretRef),
}

impl SecretInput {
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        match value {
            Value::String(s) => Secret::new(s)
                .map(Self::Plain)
                .ok_or_else(|| ConfigError::invalid(path, "must not be empty")),
            Value::Object(map) => SecretRef::from_object(map, path).map(Self::Ref),
            _ => Err(ConfigError::invalid(
                path,
                "must be a string or a SecretRef object",
            )),
        }
    }

    /// A route's `secret`: one input, or a non-empty array of them \[better\].
    pub(crate) fn list_from_value(value: &Value, path: &str) -> Result<Vec<Self>, ConfigError> {
        match value {
            Value::Array(items) if items.is_empty() => {
                Err(ConfigError::invalid(path, "must not be an empty array"))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Self::from_value(item, &index(path, i)))
                .collect(),
            Value::String(_) | Value::Object(_) => Ok(vec![Self::from_value(value, path)?]),
            _ => Err(ConfigError::invalid(
                path,
                "must be a string, a SecretRef object, or an array of them",
            )),
        }
    }
}

/// How a `file` provider reads its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileMode {
    /// `json` (default): a JSON object; the ref's `id` is a JSON Pointer into it.
    #[default]
    Json,
    /// `singleValue`: the whole file is the secret; the ref's `id` must be `value`.
    SingleValue,
}

/// An `exec` provider: a helper program that prints secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecProvider {
    /// The absolute path of the program.
    pub command: PathBuf,
    /// Its arguments, passed literally (no shell).
    pub args: Vec<String>,
    /// How long it may run. Default [`DEFAULT_EXEC_TIMEOUT`]. Past it, the helper is killed, on Unix
    /// with every process of its process group (it leads one of its own).
    pub timeout: Duration,
    /// Its whole environment: nothing else of this process's environment is passed on, so the
    /// gateway's other credentials do not leak into the helper. Set `PATH` here if the helper needs it.
    pub env: Vec<(String, String)>,
}

impl fmt::Debug for ExecProvider {
    // `env` often carries a credential for the secret store (a vault token), so only names are shown;
    // an argument can be one too (`--token …`), so only their number is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecProvider")
            .field("command", &self.command)
            .field("args", &format_args!("[{} redacted]", self.args.len()))
            .field("timeout", &self.timeout)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|(k, _)| format!("{k}=[redacted]"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One entry of `secrets.providers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretProvider {
    /// `{ source: "env", allowlist? }`.
    Env {
        /// When set, only these variable names may be read through this provider.
        allowlist: Option<Vec<String>>,
    },
    /// `{ source: "file", path, mode? }`.
    File {
        /// The absolute path of the file.
        path: PathBuf,
        /// How to read it.
        mode: FileMode,
    },
    /// `{ source: "exec", command, args?, timeoutMs?, env? }`.
    Exec(ExecProvider),
}

impl SecretProvider {
    fn source(&self) -> SecretSource {
        match self {
            Self::Env { .. } => SecretSource::Env,
            Self::File { .. } => SecretSource::File,
            Self::Exec(_) => SecretSource::Exec,
        }
    }

    fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        let source = match map.get("source") {
            Some(v) => SecretSource::parse(v, &join(path, "source"))?,
            None => return Err(ConfigError::invalid(join(path, "source"), "is required")),
        };
        match source {
            SecretSource::Env => {
                deny_unknown(map, path, &["source", "allowlist"])?;
                let allowlist = map
                    .get("allowlist")
                    .map(|v| string_array(v, &join(path, "allowlist")))
                    .transpose()?;
                Ok(Self::Env { allowlist })
            }
            SecretSource::File => {
                deny_unknown(map, path, &["source", "path", "mode"])?;
                let file = absolute(map, "path", path)?;
                let mode = match map.get("mode") {
                    None => FileMode::Json,
                    Some(v) => match v.as_str().map(js_trim) {
                        Some("json") => FileMode::Json,
                        Some("singleValue") => FileMode::SingleValue,
                        _ => {
                            return Err(ConfigError::invalid(
                                join(path, "mode"),
                                r#"must be "json" or "singleValue""#,
                            ));
                        }
                    },
                };
                Ok(Self::File { path: file, mode })
            }
            SecretSource::Exec => {
                deny_unknown(
                    map,
                    path,
                    &["source", "command", "args", "timeoutMs", "env"],
                )?;
                let command = absolute(map, "command", path)?;
                let args = match map.get("args") {
                    None => Vec::new(),
                    Some(v) => literal_string_array(v, &join(path, "args"))?,
                };
                let timeout = match map.get("timeoutMs") {
                    None => DEFAULT_EXEC_TIMEOUT,
                    // Capped like the limits' durations, so a deadline can always be computed.
                    Some(v) => Duration::from_millis(positive_int(
                        v,
                        &join(path, "timeoutMs"),
                        u64::from(u32::MAX),
                    )?),
                };
                let env = match map.get("env") {
                    None => Vec::new(),
                    Some(v) => env_map(v, &join(path, "env"))?,
                };
                Ok(Self::Exec(ExecProvider {
                    command,
                    args,
                    timeout,
                    env,
                }))
            }
        }
    }
}

fn absolute(map: &Object, key: &str, path: &str) -> Result<PathBuf, ConfigError> {
    let value = PathBuf::from(req_string(map, key, path)?);
    if value.is_absolute() {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            join(path, key),
            "must be an absolute path",
        ))
    }
}

fn string_array(value: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| ConfigError::invalid(path, "must be an array of strings"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &index(path, i)))
        .collect()
}

/// Arguments are passed as written: trimming or rejecting `""` would change what the helper sees.
fn literal_string_array(value: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| ConfigError::invalid(path, "must be an array of strings"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ConfigError::invalid(index(path, i), "must be a string"))
        })
        .collect()
}

fn env_map(value: &Value, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let map = object(value, path)?;
    map.iter()
        .map(|(key, v)| {
            let p = join(path, key);
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(ConfigError::invalid(p, "is not a valid variable name"));
            }
            match v.as_str() {
                Some(s) if !s.contains('\0') => Ok((key.clone(), s.to_owned())),
                _ => Err(ConfigError::invalid(p, "must be a string")),
            }
        })
        .collect()
}

/// `secrets.providers`: named secret providers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretProviders {
    providers: BTreeMap<String, SecretProvider>,
}

/// Why a [`SecretRef`] did not resolve. Never contains the secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnresolvedSecret {
    reason: String,
}

impl UnresolvedSecret {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for UnresolvedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UnresolvedSecret {}

impl SecretProviders {
    /// No providers: `env` refs still resolve, `file` and `exec` refs do not.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the provider `name`.
    pub fn insert(&mut self, name: impl Into<String>, provider: SecretProvider) {
        self.providers.insert(name.into(), provider);
    }

    /// The provider `name`.
    pub fn get(&self, name: &str) -> Option<&SecretProvider> {
        self.providers.get(name)
    }

    /// The providers, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretProvider)> {
        self.providers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Reads a `secrets.providers` object; `path` is where it sits.
    pub(crate) fn from_value(value: &Value, path: &str) -> Result<Self, ConfigError> {
        let map = object(value, path)?;
        let mut providers = BTreeMap::new();
        for (name, provider) in map {
            let p = join(path, name);
            let trimmed = js_trim(name);
            if trimmed.is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    "provider names must not be empty",
                ));
            }
            let provider = SecretProvider::from_value(provider, &p)?;
            if providers.insert(trimmed.to_owned(), provider).is_some() {
                return Err(ConfigError::invalid(p, "duplicate provider name"));
            }
        }
        Ok(Self { providers })
    }

    /// Resolves `reference` now: reads the variable or file, or runs the helper.
    ///
    /// The value is trimmed as JavaScript's `trim` does (a byte-order mark goes, U+0085 stays); an
    /// empty one is unresolved.
    pub fn resolve(&self, reference: &SecretRef) -> Result<Secret, UnresolvedSecret> {
        let provider = self.providers.get(&reference.provider);
        if let Some(provider) = provider {
            if provider.source() != reference.source {
                return Err(UnresolvedSecret::new(format!(
                    "secrets.providers.{} is a {} provider, not {}",
                    reference.provider,
                    provider.source(),
                    reference.source
                )));
            }
        }
        match (reference.source, provider) {
            (SecretSource::Env, Some(SecretProvider::Env { allowlist })) => {
                resolve_env(reference, allowlist.as_deref())
            }
            (SecretSource::Env, _) => resolve_env(reference, None),
            (SecretSource::File, Some(SecretProvider::File { path, mode })) => {
                resolve_file(path, *mode, &reference.id)
            }
            (SecretSource::Exec, Some(SecretProvider::Exec(exec))) => {
                resolve_exec(exec, &reference.provider, &reference.id)
            }
            (source, _) => Err(UnresolvedSecret::new(format!(
                "no {source} provider secrets.providers.{} is configured",
                reference.provider
            ))),
        }
    }
}

fn resolve_env(
    reference: &SecretRef,
    allowlist: Option<&[String]>,
) -> Result<Secret, UnresolvedSecret> {
    let name = reference.id.as_str();
    if let Some(allowlist) = allowlist {
        if !allowlist.iter().any(|allowed| allowed == name) {
            return Err(UnresolvedSecret::new(format!(
                "environment variable {name} is not on the allowlist of secrets.providers.{}",
                reference.provider
            )));
        }
    }
    // `std::env::var` rejects these names inconsistently across platforms; say why up front.
    if name.contains(['=', '\0']) {
        return Err(UnresolvedSecret::new(format!(
            "{name:?} is not a valid environment variable name"
        )));
    }
    match std::env::var(name) {
        Ok(value) => Secret::new(value)
            .ok_or_else(|| UnresolvedSecret::new(format!("environment variable {name} is empty"))),
        Err(std::env::VarError::NotPresent) => Err(UnresolvedSecret::new(format!(
            "environment variable {name} is not set"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(UnresolvedSecret::new(format!(
            "environment variable {name} is not valid UTF-8"
        ))),
    }
}

fn resolve_file(path: &Path, mode: FileMode, id: &str) -> Result<Secret, UnresolvedSecret> {
    if mode == FileMode::SingleValue && id != "value" {
        return Err(UnresolvedSecret::new(
            r#"a singleValue file provider only resolves the id "value""#,
        ));
    }
    let text = read_secret_file(path)?;
    match mode {
        FileMode::SingleValue => {
            let text = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            Secret::new(text)
                .ok_or_else(|| UnresolvedSecret::new(format!("{} is empty", path.display())))
        }
        FileMode::Json => {
            let document: Value = serde_json::from_str(&text).map_err(|e| {
                UnresolvedSecret::new(format!(
                    "{} is not valid JSON (line {}, column {})",
                    path.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            if !document.is_object() {
                return Err(UnresolvedSecret::new(format!(
                    "{} is not a JSON object",
                    path.display()
                )));
            }
            if !id.starts_with('/') {
                return Err(UnresolvedSecret::new(format!(
                    "id {id:?} is not a JSON Pointer (it must start with /)"
                )));
            }
            match document.pointer(id) {
                Some(Value::String(s)) => Secret::new(s).ok_or_else(|| {
                    UnresolvedSecret::new(format!(
                        "the value at {id} in {} is empty",
                        path.display()
                    ))
                }),
                Some(_) => Err(UnresolvedSecret::new(format!(
                    "the value at {id} in {} is not a string",
                    path.display()
                ))),
                None => Err(UnresolvedSecret::new(format!(
                    "{} has no value at {id}",
                    path.display()
                ))),
            }
        }
    }
}

fn read_secret_file(path: &Path) -> Result<String, UnresolvedSecret> {
    let shown = path.display();
    let unreadable = |e: io::Error| UnresolvedSecret::new(format!("cannot read {shown}: {e}"));
    let meta = fs::symlink_metadata(path).map_err(unreadable)?;
    if meta.file_type().is_symlink() {
        return Err(UnresolvedSecret::new(format!(
            "refusing {shown}: it is a symbolic link"
        )));
    }
    if !meta.is_file() {
        return Err(UnresolvedSecret::new(format!(
            "refusing {shown}: not a regular file"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o044 != 0 {
            return Err(UnresolvedSecret::new(format!(
                "refusing {shown}: it is readable by group or others (chmod 600 it)"
            )));
        }
    }
    let too_large = || {
        UnresolvedSecret::new(format!(
            "refusing {shown}: larger than {MAX_SECRET_BYTES} bytes"
        ))
    };
    if meta.len() > MAX_SECRET_BYTES as u64 {
        return Err(too_large());
    }
    let file = File::open(path).map_err(unreadable)?;
    // The checks above looked at the path; make sure the file we opened is the one we checked, not a
    // symlink swapped in between.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let opened = file.metadata().map_err(unreadable)?;
        if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
            return Err(UnresolvedSecret::new(format!(
                "refusing {shown}: it changed while being opened"
            )));
        }
    }
    let mut bytes = Vec::new();
    // The size check above raced with writers; cap the read itself too.
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| UnresolvedSecret::new(format!("{shown} is not valid UTF-8")))
}

fn resolve_exec(exec: &ExecProvider, provider: &str, id: &str) -> Result<Secret, UnresolvedSecret> {
    let command = exec.command.display();
    let fail = |what: String| UnresolvedSecret::new(format!("exec provider {command} {what}"));
    let request = serde_json::json!({
        "protocolVersion": 1,
        "provider": provider,
        "ids": [id],
    })
    .to_string();

    let mut cmd = Command::new(&exec.command);
    cmd.args(&exec.args)
        .env_clear()
        .envs(exec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Helper diagnostics may echo the secret; they are not ours to log.
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // A group of its own, so `kill` reaches every process the helper starts.
        cmd.process_group(0);
    }
    // `ExecProvider` can be built by hand with any timeout; an unrepresentable deadline means "never".
    let started = Instant::now();
    let deadline = started
        .checked_add(exec.timeout)
        .unwrap_or_else(|| started + Duration::from_secs(60 * 60 * 24 * 365));
    let mut child = spawn(&mut cmd).map_err(|e| fail(format!("could not be started: {e}")))?;

    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading would make this write fail; that is its business, and
        // its exit status or output decides the outcome. The thread only matters for a helper that
        // never reads, which must not block us past the deadline.
        thread::spawn(move || {
            let _ = stdin.write_all(request.as_bytes());
        });
    }
    let Some(stdout) = child.stdout.take() else {
        kill(&mut child);
        return Err(fail("has no stdout".to_owned()));
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let result = stdout
            .take(MAX_SECRET_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map(|_| out);
        let _ = tx.send(result);
    });

    let timed_out = || fail(format!("timed out after {} ms", exec.timeout.as_millis()));
    let output = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            kill(&mut child);
            return Err(fail(format!("output could not be read: {e}")));
        }
        Err(_) => {
            kill(&mut child);
            return Err(timed_out());
        }
    };
    if output.len() > MAX_SECRET_BYTES {
        kill(&mut child);
        return Err(fail(format!("printed more than {MAX_SECRET_BYTES} bytes")));
    }
    let status = wait_until(&mut child, deadline).map_err(|e| match e {
        Some(e) => fail(format!("could not be waited for: {e}")),
        None => timed_out(),
    })?;
    if !status.success() {
        return Err(fail(format!("failed ({status})")));
    }
    parse_exec_output(&output, id).map_err(|what| fail(what.to_owned()))
}

fn parse_exec_output(output: &[u8], id: &str) -> Result<Secret, &'static str> {
    let response: Value = serde_json::from_slice(output).map_err(|_| "printed invalid JSON")?;
    let response = response.as_object().ok_or("did not print a JSON object")?;
    if response.get("protocolVersion").and_then(Value::as_u64) != Some(1) {
        return Err("did not answer with protocolVersion 1");
    }
    // The error text is the helper's own and is not repeated: it may quote what it read.
    if let Some(errors) = response.get("errors").and_then(Value::as_object) {
        if errors.contains_key(id) {
            return Err("reported an error for this id");
        }
    }
    let values = response
        .get("values")
        .and_then(Value::as_object)
        .ok_or("did not print a values object")?;
    match values.get(id) {
        Some(Value::String(s)) => Secret::new(s).ok_or("returned an empty value"),
        Some(_) => Err("returned a value that is not a string"),
        None => Err("returned no value for this id"),
    }
}

fn spawn(cmd: &mut Command) -> io::Result<Child> {
    // ETXTBSY: another thread of this process may be forking while a freshly written helper's write
    // handle is still open (the handle lives in the forked child until it execs). It clears within
    // milliseconds, so a few short retries turn a spurious failure into a success.
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 10 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(10 * attempt));
            }
            result => return result,
        }
    }
}

/// Waits for `child` until `deadline`. Past it, or if waiting fails, the child is killed; the error
/// is `None` for a timeout.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<ExitStatus, Option<io::Error>> {
    // The helper has closed its stdout by now, so it is normally exiting: the first poll or two
    // catch it. A helper that closes stdout and lingers is bounded by the deadline like any other.
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {
                let now = Instant::now();
                if now >= deadline {
                    kill(child);
                    return Err(None);
                }
                thread::sleep((deadline - now).min(Duration::from_millis(2)));
            }
            Err(e) => {
                kill(child);
                return Err(Some(e));
            }
        }
    }
}

/// Kills the helper with every process of its group, then reaps it.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        // Signalled before the helper is reaped: until then its PID, which names the group, cannot
        // be reused. `kill(-1)` would signal every process we may signal, so PID 1 is never passed
        // (a child of ours cannot be PID 1 anyway).
        let group = Pid::from_child(child);
        if !group.is_init() {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_provider_debug_shows_no_argument_or_env_value() {
        let provider = ExecProvider {
            command: "/usr/bin/vault".into(),
            args: vec!["--token".into(), "s.arg-credential".into()],
            timeout: DEFAULT_EXEC_TIMEOUT,
            env: vec![("VAULT_TOKEN".into(), "s.env-credential".into())],
        };
        let shown = format!("{provider:?} {provider:#?}");
        assert!(!shown.contains("credential"), "{shown}");
        assert!(shown.contains("/usr/bin/vault") && shown.contains("[2 redacted]"));
        assert!(shown.contains("VAULT_TOKEN=[redacted]"));
    }
}
