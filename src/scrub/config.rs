//! What to scrub: JSON positions and the keys removed there.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// Default cap on a response body buffered for scrubbing: 4 MiB.
const DEFAULT_MAX_BUFFERED_BYTES: usize = 4 * 1024 * 1024;

/// One step of a [`ScrubPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Step {
    Key(Box<str>),
    Each,
}

/// A position in a JSON document, such as `result.flow` or `result.flows[]`.
///
/// Text form: keys separated by `.`; `[]` after a key (or alone, at the start) means "every element
/// of this array". An empty string or `$` is the top level (the whole body). Examples:
/// `result.flow`, `result.flows[]`, `[]` (every element of a top-level array), `$`.
///
/// A key that contains `.`, `[` or `]` cannot be written in text form; build it with
/// [`key`](ScrubPath::key) instead.
///
/// `[]` matches arrays only and a key matches objects only: a value of another type at a position
/// is left alone, never an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScrubPath {
    steps: Vec<Step>,
}

impl ScrubPath {
    /// The top level: the whole body is the object to scrub.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path, then the member `key` of an object.
    pub fn key(mut self, key: impl Into<Box<str>>) -> Self {
        self.steps.push(Step::Key(key.into()));
        self
    }

    /// This path, then every element of an array.
    pub fn each(mut self) -> Self {
        self.steps.push(Step::Each);
        self
    }

    /// Parses the text form (see the type docs).
    pub fn parse(text: &str) -> Result<Self, InvalidScrubPath> {
        let invalid = |reason| InvalidScrubPath {
            path: text.to_owned(),
            reason,
        };
        let mut rest = text.strip_prefix('$').unwrap_or(text);
        let mut path = Self::root();
        if rest.is_empty() {
            return Ok(path);
        }
        // A leading `[]` addresses a top-level array, so the first segment may have no key.
        let mut first = true;
        loop {
            let end = rest.find('.').unwrap_or(rest.len());
            let segment = &rest[..end];
            let name_end = segment.find('[').unwrap_or(segment.len());
            let (name, mut brackets) = segment.split_at(name_end);
            if name.contains(']') {
                return Err(invalid("`]` without `[`"));
            }
            let root_array = first && brackets.starts_with('[');
            if name.is_empty() && !root_array {
                return Err(invalid("empty key"));
            }
            if !name.is_empty() {
                path = path.key(name);
            }
            while !brackets.is_empty() {
                brackets = brackets
                    .strip_prefix("[]")
                    .ok_or_else(|| invalid("only `[]` may follow a key"))?;
                path = path.each();
            }
            if end == rest.len() {
                return Ok(path);
            }
            rest = &rest[end + 1..];
            first = false;
        }
    }

    /// Whether this is the top level.
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }
}

impl FromStr for ScrubPath {
    type Err = InvalidScrubPath;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for ScrubPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("$");
        }
        let mut first = true;
        for step in &self.steps {
            match step {
                Step::Key(key) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Step::Each => f.write_str("[]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A [`ScrubPath`] text that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidScrubPath {
    path: String,
    reason: &'static str,
}

impl fmt::Display for InvalidScrubPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scrub path `{}`: {}", self.path, self.reason)
    }
}

impl std::error::Error for InvalidScrubPath {}

/// The compiled rules: a tree of positions, so a shared prefix such as `result` is walked once
/// however many rules sit under it.
#[derive(Clone, Debug, Default)]
struct Node {
    /// Keys removed from an object at this position.
    remove: Vec<Box<str>>,
    /// Members of an object at this position to descend into.
    children: Vec<(Box<str>, Node)>,
    /// Rules for every element of an array at this position.
    each: Option<Box<Node>>,
}

impl Node {
    fn insert(&mut self, steps: &[Step], keys: &[Box<str>]) {
        match steps.split_first() {
            None => {
                for key in keys {
                    if !self.remove.contains(key) {
                        self.remove.push(key.clone());
                    }
                }
            }
            Some((Step::Each, rest)) => self.each.get_or_insert_default().insert(rest, keys),
            Some((Step::Key(name), rest)) => {
                let child = match self.children.iter().position(|(n, _)| n == name) {
                    Some(i) => &mut self.children[i].1,
                    None => {
                        self.children.push((name.clone(), Node::default()));
                        &mut self.children.last_mut().expect("just pushed").1
                    }
                };
                child.insert(rest, keys);
            }
        }
    }

    fn apply(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => self.apply_object(map),
            Value::Array(items) => match &self.each {
                Some(each) => items.iter_mut().map(|item| each.apply(item)).sum(),
                None => 0,
            },
            _ => 0,
        }
    }

    fn apply_object(&self, map: &mut Map<String, Value>) -> usize {
        let mut removed = 0;
        // A scan with string compares beats hashing each candidate key: records have a dozen
        // members and most candidates are absent. `retain` keeps the order of the rest
        // (`Map::remove` would swap the last member into the hole under `preserve_order`).
        if !self.remove.is_empty() && map.keys().any(|k| self.remove.iter().any(|r| **r == **k)) {
            let before = map.len();
            map.retain(|k, _| !self.remove.iter().any(|r| **r == **k));
            removed += before - map.len();
        }
        if !self.children.is_empty() {
            for (key, child_value) in map.iter_mut() {
                if let Some((_, child)) = self.children.iter().find(|(n, _)| **n == **key) {
                    removed += child.apply(child_value);
                }
            }
        }
        removed
    }
}

/// What [`ScrubOwnerMetadata`](crate::ScrubOwnerMetadata) removes, and how much it buffers.
///
/// A list of rules, each a [`ScrubPath`] and the keys removed from the object found there. Only those
/// positions are touched: this is not a recursive walk, so caller-supplied JSON such as a flow's
/// `stateJson` keeps a member named `ownerKey`.
///
/// [`new`](ScrubConfig::new) (and `Default`) gives SPEC §4: flows at `result.flow`,
/// `result.flows[]` and `result.current` lose [`FLOW_KEYS`](ScrubConfig::FLOW_KEYS); tasks at
/// `result.task` and `result.tasks[]` lose [`TASK_KEYS`](ScrubConfig::TASK_KEYS).
///
/// ```
/// use serde_json::json;
/// use tower_webhooks::scrub::{ScrubConfig, ScrubPath};
///
/// // Piecemeal use: the whole body is a flow.
/// let config = ScrubConfig::empty().with_flow_at(ScrubPath::root());
/// let mut flow = json!({"flowId": "f1", "ownerKey": "agent:main:secret", "stateJson": {"ownerKey": 1}});
/// assert_eq!(config.scrub(&mut flow), 1);
/// assert_eq!(flow, json!({"flowId": "f1", "stateJson": {"ownerKey": 1}}));
/// ```
#[derive(Clone)]
pub struct ScrubConfig {
    rules: Vec<(ScrubPath, Vec<Box<str>>)>,
    tree: Node,
    max_buffered_bytes: usize,
}

impl ScrubConfig {
    /// Keys removed from every flow object by default.
    pub const FLOW_KEYS: [&'static str; 3] = ["ownerKey", "requesterOrigin", "chainId"];
    /// Keys removed from every task object by default.
    pub const TASK_KEYS: [&'static str; 4] = [
        "ownerKey",
        "requesterSessionKey",
        "requesterAgentId",
        "metadata",
    ];
    /// Positions of flow objects in a TaskFlow envelope.
    pub const FLOW_PATHS: [&'static str; 3] = ["result.flow", "result.flows[]", "result.current"];
    /// Positions of task objects in a TaskFlow envelope.
    pub const TASK_PATHS: [&'static str; 2] = ["result.task", "result.tasks[]"];
    /// Default cap on a buffered response body: 4 MiB.
    pub const DEFAULT_MAX_BUFFERED_BYTES: usize = DEFAULT_MAX_BUFFERED_BYTES;

    /// The SPEC §4 rules and a 4 MiB buffer cap.
    pub fn new() -> Self {
        let flows = Self::FLOW_PATHS.iter().map(|p| path_const(p));
        let tasks = Self::TASK_PATHS.iter().map(|p| path_const(p));
        let mut config = Self::empty();
        for path in flows {
            config = config.with_flow_at(path);
        }
        for path in tasks {
            config = config.with_task_at(path);
        }
        config
    }

    /// No rules (scrubs nothing) and a 4 MiB buffer cap; add rules with the `with_*` methods.
    pub fn empty() -> Self {
        Self {
            rules: Vec::new(),
            tree: Node::default(),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
        }
    }

    /// Adds a rule: an object at `path` loses `keys`.
    pub fn with_rule<K: AsRef<str>>(
        mut self,
        path: ScrubPath,
        keys: impl IntoIterator<Item = K>,
    ) -> Self {
        let keys: Vec<Box<str>> = keys.into_iter().map(|k| k.as_ref().into()).collect();
        self.tree.insert(&path.steps, &keys);
        self.rules.push((path, keys));
        self
    }

    /// Adds a rule: the object at `path` is a flow and loses [`FLOW_KEYS`](ScrubConfig::FLOW_KEYS).
    pub fn with_flow_at(self, path: ScrubPath) -> Self {
        self.with_rule(path, Self::FLOW_KEYS)
    }

    /// Adds a rule: the object at `path` is a task and loses [`TASK_KEYS`](ScrubConfig::TASK_KEYS).
    pub fn with_task_at(self, path: ScrubPath) -> Self {
        self.with_rule(path, Self::TASK_KEYS)
    }

    /// Sets the cap on a response body buffered for scrubbing (every JSON body except the ones this
    /// crate built owner-free).
    /// A larger body is refused with `500`, not passed on unscrubbed.
    pub fn with_max_buffered_bytes(mut self, max: usize) -> Self {
        self.max_buffered_bytes = max;
        self
    }

    /// The cap on a buffered response body, in bytes.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered_bytes
    }

    /// The rules, in the order they were added: each position and the keys removed there.
    pub fn rules(&self) -> impl Iterator<Item = (&ScrubPath, &[Box<str>])> {
        self.rules.iter().map(|(p, k)| (p, k.as_slice()))
    }

    /// Removes the configured keys at the configured positions of `value`, in place, and returns
    /// how many members were removed.
    ///
    /// Never panics, whatever `value` is; the order of the remaining members is kept; scrubbing
    /// twice changes nothing the second time.
    pub fn scrub(&self, value: &mut Value) -> usize {
        self.tree.apply(value)
    }
}

/// Parses one of our own constant paths; they are covered by tests, so the fallback (the top
/// level, which would scrub more, never less) is never taken.
fn path_const(text: &str) -> ScrubPath {
    ScrubPath::parse(text).unwrap_or_default()
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ScrubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Rules<'a>(&'a [(ScrubPath, Vec<Box<str>>)]);
        impl fmt::Debug for Rules<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(p, k)| (p.to_string(), k)))
                    .finish()
            }
        }
        f.debug_struct("ScrubConfig")
            .field("rules", &Rules(&self.rules))
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_print() {
        for (text, shown) in [
            ("", "$"),
            ("$", "$"),
            ("result.flow", "result.flow"),
            ("$result.flows[]", "result.flows[]"),
            ("[]", "[]"),
            ("[].flow", "[].flow"),
            ("a[][].b", "a[][].b"),
        ] {
            let path = ScrubPath::parse(text).unwrap();
            assert_eq!(path.to_string(), shown, "{text}");
            assert_eq!(ScrubPath::parse(shown).unwrap(), path, "{text}");
        }
        assert_eq!(
            ScrubPath::parse("result.flows[]").unwrap(),
            ScrubPath::root().key("result").key("flows").each()
        );
        for bad in ["a..b", ".a", "a.", "a[", "a[x]", "a]", "a.[]", "[]."] {
            assert!(ScrubPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_paths_are_the_spec_positions() {
        let config = ScrubConfig::new();
        let shown: Vec<String> = config.rules().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "result.flow",
                "result.flows[]",
                "result.current",
                "result.task",
                "result.tasks[]"
            ]
        );
        assert!(config.rules().all(|(p, _)| !p.is_root()));
    }
}
