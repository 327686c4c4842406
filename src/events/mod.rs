//! Event routes (SPEC §8): a sender's own event, verified elsewhere
//! ([`signature`](crate::signature), [`ip_allowlist`](crate::ip_allowlist)), read here: its event
//! type, a URL-verification handshake, the route's event allowlist, its idempotency key with the
//! [`IdempotencyLedger`] that de-duplicates it, and the templates that turn it into a flow.
//!
//! Every piece works on a parsed body (`serde_json::Value`) and the request headers, so it can
//! serve a handler of your own as well as the gateway's event routes.
//!
//! ```
//! use http::HeaderMap;
//! use serde_json::json;
//! use tower_webhooks::events::{EventTypeSource, Idempotency, TemplateContext, Verification, compose, event_allowed};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-github-event", "pull_request".parse().unwrap());
//! headers.insert("x-github-delivery", "72d3162e".parse().unwrap());
//! let body = json!({"action": "opened", "pull_request": {"number": 7, "title": "Fix it"}});
//!
//! let event_type = EventTypeSource::default().event_type(&headers, &body);
//! assert_eq!(event_type.as_deref(), Some("pull_request"));
//! assert!(Verification::default().answer(event_type.as_deref(), &body).is_none());
//! assert!(event_allowed(&["pull_request".to_owned()], event_type.as_deref()));
//! let key = Idempotency::default().key(&headers, &body, None);
//! assert_eq!(key.as_deref(), Some("72d3162e"));
//!
//! let context = TemplateContext {
//!     route_id: "github", event_type: event_type.as_deref(), idempotency_key: key.as_deref(),
//!     headers: &headers, body: &body, raw_body: "",
//! };
//! let goal = compose(&[Some("Review PR #{pull_request.number}: {pull_request.title}")], &context, &["review".to_owned()]);
//! assert_eq!(goal, "Review PR #7: Fix it\n\nUse these OpenClaw skills when useful: review");
//! ```

mod extract;
pub(crate) mod ledger;
mod template;
mod value;

pub use extract::{
    DEFAULT_IDEMPOTENCY_TTL, EVENT_TYPE_HEADERS, EVENT_TYPE_PATHS, EventTypeSource,
    IDEMPOTENCY_HEADERS, IDEMPOTENCY_PATHS, Idempotency, Verification, event_allowed,
};
pub use ledger::{
    Begin, Claim, DEFAULT_MAX_KEYS_PER_ROUTE, IN_PROGRESS_LEASE, IdempotencyLedger,
    LedgerUnavailable, MemoryLedger,
};
pub use template::{
    RAW_MAX_CHARS, SINGLE_BRACE_MAX_CHARS, TemplateContext, compose, default_prompt, render,
    skills_hint,
};
pub use value::{lookup, stable_json};
