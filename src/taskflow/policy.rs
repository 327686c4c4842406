//! Which child sessions a route's `run_task` may name (SPEC §3, `childSessions`).
//!
//! The original lets any caller holding a route's secret start a task in *any* session, including
//! another agent's. Every route here has a policy, `same-agent` unless configured otherwise; a
//! violation answers `403` `child_session_forbidden` before the store is touched.
//!
//! One type serves the config loader (`childSessions` of a route, read into
//! [`RouteConfig`](crate::config::RouteConfig) and [`ResolvedRoute`](crate::config::ResolvedRoute)) and the action
//! service ([`TaskFlowRoute::child_sessions`](crate::taskflow::TaskFlowRoute::child_sessions)).

use std::fmt;

/// Child-session authority of one route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ChildSessionPolicy {
    /// `"same-agent"` (default): `childSessionKey` must start with `agent:<agent>:`, where `<agent>`
    /// is the second segment of the route's session key. A session key not of the form
    /// `agent:<agent>:…` (non-empty `<agent>`, followed by `:`) falls back to
    /// [`Descendant`](Self::Descendant).
    #[default]
    SameAgent,
    /// `"descendant"`: `childSessionKey` must start with `<sessionKey>:`.
    Descendant,
    /// `"any"`: no restriction (the original's behaviour).
    Any,
    /// A list of allowed prefixes: `childSessionKey` must start with one of them. An empty list
    /// allows no child session at all.
    Prefixes(Vec<String>),
}

/// A policy name that is not `same-agent`, `descendant` or `any`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be one of same-agent, descendant, any, or a list of prefixes (got {:?})",
            self.0
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl std::str::FromStr for ChildSessionPolicy {
    type Err = UnknownPolicy;

    /// Parses the string forms `same-agent`, `descendant` and `any` (trimmed, case-sensitive).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_name(text.trim()).ok_or_else(|| UnknownPolicy(text.to_owned()))
    }
}

/// The `agent:<agent>:` prefix of a session key, if it has that form.
fn agent_prefix(session_key: &str) -> Option<&str> {
    let rest = session_key.strip_prefix("agent:")?;
    let end = rest.find(':')?;
    if end == 0 {
        return None;
    }
    Some(&session_key[.."agent:".len() + end + 1])
}

impl ChildSessionPolicy {
    /// The policy named exactly `same-agent`, `descendant` or `any` (untrimmed, case-sensitive):
    /// the one spelling table behind [`FromStr`](std::str::FromStr) and the config loader, which
    /// trim differently (Rust's `trim` here, JavaScript's in a config file).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "same-agent" => Some(Self::SameAgent),
            "descendant" => Some(Self::Descendant),
            "any" => Some(Self::Any),
            _ => None,
        }
    }

    /// Whether a route owned by `session_key` may start a task in `child`.
    pub fn allows(&self, session_key: &str, child: &str) -> bool {
        match self {
            Self::Any => true,
            Self::SameAgent => match agent_prefix(session_key) {
                Some(prefix) => child.starts_with(prefix),
                None => Self::Descendant.allows(session_key, child),
            },
            Self::Descendant => child
                .strip_prefix(session_key)
                .is_some_and(|rest| rest.starts_with(':')),
            Self::Prefixes(prefixes) => prefixes.iter().any(|p| child.starts_with(p.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_agent_uses_the_second_segment() {
        let policy = ChildSessionPolicy::SameAgent;
        assert!(policy.allows("agent:main:hooks", "agent:main:sub:1"));
        assert!(policy.allows("agent:main:hooks", "agent:main:hooks"));
        assert!(!policy.allows("agent:main:hooks", "agent:other:x"));
        assert!(!policy.allows("agent:main:hooks", "agent:mainframe:x"));
        assert!(!policy.allows("agent:main:hooks", "agent:main"));
    }

    #[test]
    fn same_agent_falls_back_to_descendant() {
        let policy = ChildSessionPolicy::SameAgent;
        for owner in ["hooks", "agent:", "agent::x", "agent:main"] {
            assert!(policy.allows(owner, &format!("{owner}:child")), "{owner}");
            assert!(!policy.allows(owner, owner), "{owner}");
            assert!(!policy.allows(owner, "agent:main:x") || owner == "agent:main");
        }
        assert!(!policy.allows("hooks", "hooksx:child"));
    }

    #[test]
    fn descendant_any_and_prefixes() {
        assert!(ChildSessionPolicy::Descendant.allows("s", "s:a"));
        assert!(!ChildSessionPolicy::Descendant.allows("s", "s"));
        assert!(!ChildSessionPolicy::Descendant.allows("s", "sa"));
        assert!(ChildSessionPolicy::Any.allows("s", "anything"));
        let list = ChildSessionPolicy::Prefixes(vec!["a:".into(), "b:".into()]);
        assert!(list.allows("s", "b:1"));
        assert!(!list.allows("s", "c:1"));
        assert!(!ChildSessionPolicy::Prefixes(vec![]).allows("s", "s:1"));
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            " any ".parse::<ChildSessionPolicy>(),
            Ok(ChildSessionPolicy::Any)
        );
        assert_eq!(
            "same-agent".parse::<ChildSessionPolicy>(),
            Ok(ChildSessionPolicy::SameAgent)
        );
        assert_eq!(
            "descendant".parse::<ChildSessionPolicy>(),
            Ok(ChildSessionPolicy::Descendant)
        );
        assert!("Any".parse::<ChildSessionPolicy>().is_err());
    }
}
