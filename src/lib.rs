//! Tower middleware for authenticated webhook ingress.
//!
//! `tower-webhooks` re-implements OpenClaw's bundled webhooks plugin (authenticated HTTP routes that
//! create and drive managed TaskFlows) as composable tower layers. Each layer also works alone in front
//! of any other ingress.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod future;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod guard;
pub mod pipeline;
pub mod rejection;
pub mod router;
pub mod secret;
#[cfg(feature = "gateway")]
pub mod serve;

pub mod auth;
pub mod body_limit;
pub mod in_flight;
pub mod rate_limit;
pub mod scrub;
pub mod taskflow;

pub use auth::{
    AuthLockout, LockoutConfig, SecretsHandle, SharedSecretAuth, SharedSecretAuthConfig,
    SharedSecretAuthLayer,
};
pub use body::{BufferedBody, ResponseBody, StandaloneBody, json_response};
pub use body_limit::{
    BodyLimit, BodyLimitConfig, BodyLimitLayer, BodyTimeoutError, Buffered, BufferedFuture,
    LimitedBody, Streaming,
};
pub use client_ip::{InvalidCidr, TrustedProxies};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    AuthFailureSettings, BodySettings, ChildSessions, ConfigError, ExecProvider, FileMode,
    InFlightSettings, Limits, RateLimitSettings, ResolvedConfig, ResolvedRoute, RouteConfig,
    SecretInput, SecretProvider, SecretProviders, SecretRef, SecretSource, SkippedRoute,
    UnresolvedSecret, WebhooksConfig, normalize_webhook_path,
};
pub use guard::{RequireJson, RequireJsonLayer, RequirePost, RequirePostLayer};
pub use in_flight::{
    InFlightBody, InFlightConfig, InFlightLimit, InFlightLimitLayer, InFlightLimiter,
    InFlightPermit, InFlightResponseFuture,
};
pub use pipeline::{RouteService, WebhookPipeline};
pub use rate_limit::{
    FixedWindowLimiter, FixedWindowRateLimit, FixedWindowRateLimitLayer, GlobalKey, KeyExtractor,
    Limited, NormalizedPathAndPeerIp, PathAndClientIp, RateLimitConfig,
};
pub use rejection::Rejection;
pub use router::{RouteTable, RouteTableHandle, RouterFuture, WebhookRouter};
pub use scrub::{
    InvalidScrubPath, ScrubConfig, ScrubOwnerMetadata, ScrubOwnerMetadataLayer, ScrubPath,
    ScrubResponseFuture,
};
pub use secret::Secret;
pub use taskflow::{
    Action, ActionOutcome, CancelHook, CancelImmediately, CancelOutcome, ChildCancel,
    ChildSessionPolicy, ErrorCode, Flow, FlowEnd, FlowStatus, MemoryStore, MemoryStoreConfig,
    Mutation, MutationOutcome, NewFlow, NewTask, NotifyPolicy, Patch, RunTaskOutcome, Runtime,
    StoreError, StoreEvent, SyncMode, Task, TaskFlowActionService, TaskFlowFuture, TaskFlowRoute,
    TaskFlowStore, TaskStatus, TaskSummary, TaskUpdate, TaskUpdateOutcome, ValidationError,
};
