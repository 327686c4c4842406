//! [`WebhookPipeline`]: the layers stacked in the contract's order over the TaskFlow service, for
//! every route.
//!
//! ```text
//! request ─► WebhookRouter (path → route) ─► ResolveClientIp ─► RequirePost ─► FixedWindowRateLimit ─► RequireJson
//!         ─► InFlightLimit ─► SharedSecretAuth ─► BodyLimit (buffered) ─► ScrubOwnerMetadata
//!         ─► TaskFlowActionService ─► response
//! ```
//!
//! The order decides which status an attacker sees (SPEC §2): method first, then the rate limit, so
//! unauthenticated traffic spends the same budget, then content type, the in-flight limit, and auth
//! before a single body byte is read.
//!
//! One pipeline holds what all routes share: the store, the rate limiter, the in-flight limiter and
//! the auth-failure lockout. Building a new route table from it (on reload) keeps that state, so a
//! reload neither forgets a client's budget nor lifts a lockout.
//!
//! ```
//! use tower::ServiceExt;
//! use tower_webhooks::WebhookPipeline;
//! use tower_webhooks::body::BufferedBody;
//! use tower_webhooks::config::{Limits, ResolvedRoute};
//! use tower_webhooks::secret::Secret;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pipeline = WebhookPipeline::in_memory(Limits::default());
//! let route = ResolvedRoute::new("zap", "agent:main:main", [Secret::new("s3cret").unwrap()]);
//! let router = pipeline.router(&[route]);
//!
//! let mut request = http::Request::post("/plugins/webhooks/zap")
//!     .header("content-type", "application/json")
//!     .header("authorization", "Bearer s3cret")
//!     .body(BufferedBody::from(r#"{"action":"create_flow","goal":"triage the inbox"}"#))
//!     .unwrap();
//! request.extensions_mut().insert(std::net::SocketAddr::from(([127, 0, 0, 1], 50000)));
//! let response = router.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::auth::{AuthLockout, SharedSecretAuth, SharedSecretAuthConfig};
use crate::body_limit::BodyLimit;
use crate::client_ip::ResolveClientIp;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Limits, ResolvedRoute};
use crate::guard::{RequireJson, RequirePost};
use crate::in_flight::{InFlightLimit, InFlightLimitLayer, InFlightLimiter};
use crate::keyed::{
    KeyHasher, LockoutStore, NormalizedPathAndPeerIp, PathAndClientIp, SlotStore, WindowStore,
};
use crate::rate_limit::{FixedWindowLimiter, FixedWindowRateLimit, FixedWindowRateLimitLayer};
use crate::router::{RouteTable, WebhookRouter};
use crate::scrub::{ScrubConfig, ScrubOwnerMetadata};
use crate::taskflow::{MemoryStore, TaskFlowActionService, TaskFlowRoute, TaskFlowStore};
use crate::telemetry::RecordRoute;

/// The service of one route: every layer of the contract over the TaskFlow service, recording the
/// route id for a [`Telemetry`](crate::telemetry::Telemetry) layer outside the router.
///
/// `W`, `Sl` and `Lo` are the stores of the rate limit, the in-flight limit and the lockout: in
/// memory by default, shared ones (Redis, SPEC §7) through [`WebhookPipeline::with_stores`].
pub type RouteService<St, W = FixedWindowLimiter, Sl = InFlightLimiter, Lo = AuthLockout> =
    RecordRoute<
        ResolveClientIp<
            RequirePost<
                FixedWindowRateLimit<
                    RequireJson<
                        InFlightLimit<
                            SharedSecretAuth<
                                BodyLimit<ScrubOwnerMetadata<TaskFlowActionService<St>>>,
                                Lo,
                            >,
                            NormalizedPathAndPeerIp,
                            Sl,
                        >,
                    >,
                    PathAndClientIp,
                    W,
                >,
            >,
        >,
    >;

/// Builds route services over one store with shared limiter state. See the [module docs](self).
///
/// The limiters count in memory unless built [`with_stores`](Self::with_stores) of another
/// backend (`W`: the rate windows, `Sl`: the in-flight slots, `Lo`: the lockout).
pub struct WebhookPipeline<St, W = FixedWindowLimiter, Sl = InFlightLimiter, Lo = AuthLockout> {
    store: Arc<St>,
    limits: Limits,
    rate_limit: FixedWindowRateLimitLayer<PathAndClientIp, W>,
    in_flight: InFlightLimitLayer<NormalizedPathAndPeerIp, Sl>,
    lockout: Lo,
    scrub: Arc<ScrubConfig>,
}

impl<St, W: Clone, Sl: Clone, Lo: Clone> Clone for WebhookPipeline<St, W, Sl, Lo> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            limits: self.limits.clone(),
            rate_limit: self.rate_limit.clone(),
            in_flight: self.in_flight.clone(),
            lockout: self.lockout.clone(),
            scrub: Arc::clone(&self.scrub),
        }
    }
}

impl<St, W, Sl, Lo: fmt::Debug> fmt::Debug for WebhookPipeline<St, W, Sl, Lo> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPipeline")
            .field("limits", &self.limits)
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl WebhookPipeline<MemoryStore> {
    /// A pipeline over a fresh in-memory store configured by `limits.store`, on the system clock.
    pub fn in_memory(limits: Limits) -> Self {
        Self::new(MemoryStore::with_config(limits.store.clone()), limits)
    }
}

impl<St: TaskFlowStore> WebhookPipeline<St> {
    /// A pipeline over `store` (a store or an `Arc` of one) with `limits`, on the system clock.
    /// `store` keeps its own configuration: `limits.store` configures only the store that
    /// [`in_memory`](WebhookPipeline::in_memory) builds.
    pub fn new(store: impl Into<Arc<St>>, limits: Limits) -> Self {
        Self::with_clock(store, limits, SystemClock::shared())
    }

    /// A pipeline whose rate limit and lockout read `clock`.
    ///
    /// # Panics
    ///
    /// If a section of `limits` does not validate (a zero quota, say); the message names the
    /// field. Limits read by [`WebhooksConfig`](crate::WebhooksConfig) always validate.
    pub fn with_clock(store: impl Into<Arc<St>>, limits: Limits, clock: SharedClock) -> Self {
        Self::with_hasher(store, limits, clock, KeyHasher::default())
    }

    /// A pipeline whose rate limit and lockout read `clock`, and whose three limiters derive their
    /// keys with `hasher`: replicas that share the hasher's secret share keys (SPEC §7).
    ///
    /// # Panics
    ///
    /// If a section of `limits` does not validate (a zero quota, say); the message names the
    /// field. Limits read by [`WebhooksConfig`](crate::WebhooksConfig) always validate.
    pub fn with_hasher(
        store: impl Into<Arc<St>>,
        limits: Limits,
        clock: SharedClock,
        hasher: KeyHasher,
    ) -> Self {
        // `Limits` holds each layer's own configuration: nothing to translate, and the
        // constructors refuse (never clamp) a value the loader would have refused.
        let rate_limit = FixedWindowRateLimitLayer::with_limiter(FixedWindowLimiter::with_hasher(
            limits.rate_limit,
            Arc::clone(&clock),
            hasher,
        ));
        let in_flight = InFlightLimitLayer::with_hasher(limits.in_flight, hasher);
        let lockout = AuthLockout::with_hasher(limits.auth_failures, clock, hasher);

        Self {
            store: store.into(),
            limits,
            rate_limit,
            in_flight,
            lockout,
            scrub: Arc::new(ScrubConfig::new()),
        }
    }
}

impl<St: TaskFlowStore, W, Sl, Lo> WebhookPipeline<St, W, Sl, Lo>
where
    W: WindowStore + Clone,
    Sl: SlotStore + Clone,
    Lo: LockoutStore + Clone,
{
    /// A pipeline over `store` with `limits` whose limiters count in `rate_limit`, `in_flight` and
    /// `lockout`: a shared backend's stores (SPEC §7, see [`crate::redis`] with the `redis`
    /// feature). The stores keep their own configuration; `limits` gives the body limit, the
    /// trusted proxies and what [`limits`](Self::limits) reports.
    pub fn with_stores(
        store: impl Into<Arc<St>>,
        limits: Limits,
        rate_limit: W,
        in_flight: Sl,
        lockout: Lo,
    ) -> Self {
        Self {
            store: store.into(),
            limits,
            rate_limit: FixedWindowRateLimitLayer::with_store(rate_limit),
            in_flight: InFlightLimitLayer::with_store(in_flight),
            lockout,
            scrub: Arc::new(ScrubConfig::new()),
        }
    }

    /// The store every route acts on.
    pub fn store(&self) -> &Arc<St> {
        &self.store
    }

    /// The limits the pipeline was built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The auth-failure lockout shared by all routes.
    pub fn lockout(&self) -> &Lo {
        &self.lockout
    }

    /// The rate limiter shared by all routes.
    pub fn rate_limiter(&self) -> &W {
        self.rate_limit.limiter()
    }

    /// The in-flight limiter shared by all routes.
    pub fn in_flight_limiter(&self) -> &Sl {
        self.in_flight.limiter()
    }

    /// The service of one route.
    pub fn route(&self, route: &ResolvedRoute) -> RouteService<St, W, Sl, Lo> {
        let taskflow_route = TaskFlowRoute::new(route.id.clone(), route.session_key.clone())
            .controller_id(route.controller_id.clone())
            .child_sessions(route.child_sessions.clone());
        let action = TaskFlowActionService::new(Arc::clone(&self.store), taskflow_route);
        let scrubbed = ScrubOwnerMetadata::new(action, Arc::clone(&self.scrub));
        let limited = BodyLimit::new(scrubbed, self.limits.body);
        let auth = SharedSecretAuth::new(
            limited,
            SharedSecretAuthConfig::new(route.secrets.iter().cloned())
                .lockout(self.lockout.clone()),
        );
        let in_flight = self.in_flight.layer(auth);
        let json = RequireJson::new(in_flight);
        let rate_limited = self.rate_limit.layer(json);
        let post = RequirePost::new(rate_limited);
        // The one place the trusted proxies are configured: the rate limit and the lockout read
        // the client it finds.
        let client = ResolveClientIp::new(post, self.limits.trusted_proxies.clone());
        RecordRoute::new(client, route.id.as_str())
    }

    /// A route table of `routes`, for [`WebhookRouter::from_table`] or a reload through
    /// [`RouteTableHandle::replace`](crate::router::RouteTableHandle::replace).
    pub fn table(&self, routes: &[ResolvedRoute]) -> RouteTable<RouteService<St, W, Sl, Lo>> {
        RouteTable::new(
            routes
                .iter()
                .map(|route| (route.path.as_str(), self.route(route))),
        )
    }

    /// A standalone router over `routes` (unknown paths answer `404`).
    pub fn router(&self, routes: &[ResolvedRoute]) -> WebhookRouter<RouteService<St, W, Sl, Lo>> {
        WebhookRouter::from_table(self.table(routes))
    }
}
