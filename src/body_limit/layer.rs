//! [`BodyLimitLayer`], [`BodyLimitConfig`] and the two mode markers.

use std::marker::PhantomData;
use std::time::Duration;

use tower_layer::Layer;

use super::service::BodyLimit;

/// Mode marker: collect the whole body, then call the inner service with a
/// [`BufferedBody`](crate::BufferedBody). Rejections (413, 408, 400) are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Buffered {
    _private: (),
}

/// Mode marker: call the inner service at once with a [`LimitedBody`](super::LimitedBody) that fails
/// when the cap or the deadline is passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Streaming {
    _private: (),
}

/// Limits of [`BodyLimit`]: a byte cap, a total deadline from the start of reading, and the mode.
///
/// The mode is a type parameter because the two modes hand the inner service different request body
/// types; picking it here lets one `BodyLimitLayer::new(config)` infer the right service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyLimitConfig<M = Buffered> {
    max_bytes: usize,
    timeout: Duration,
    _mode: PhantomData<M>,
}

impl BodyLimitConfig<Buffered> {
    /// Buffered mode with the default limits
    /// ([`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES), [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)).
    pub const fn buffered() -> Self {
        Self::with_defaults()
    }
}

impl BodyLimitConfig<Streaming> {
    /// Streaming mode with the default limits
    /// ([`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES), [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)).
    pub const fn streaming() -> Self {
        Self::with_defaults()
    }
}

impl Default for BodyLimitConfig<Buffered> {
    fn default() -> Self {
        Self::buffered()
    }
}

impl Default for BodyLimitConfig<Streaming> {
    fn default() -> Self {
        Self::streaming()
    }
}

impl<M> BodyLimitConfig<M> {
    /// The default byte cap: 262,144 bytes (256 KiB), as in SPEC §2 step 7.
    pub const DEFAULT_MAX_BYTES: usize = 262_144;
    /// The default total deadline for reading the body: 15 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(15_000);

    const fn with_defaults() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            _mode: PhantomData,
        }
    }

    /// Sets the byte cap. A body of exactly `max_bytes` bytes passes; one more byte is a 413.
    pub const fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the total deadline for reading the body.
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The byte cap.
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The total deadline for reading the body.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Layer of [`BodyLimit`]; the mode comes from the [`BodyLimitConfig`].
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer<M = Buffered> {
    config: BodyLimitConfig<M>,
}

impl<M> BodyLimitLayer<M> {
    /// A layer applying `config`.
    pub const fn new(config: BodyLimitConfig<M>) -> Self {
        Self { config }
    }

    /// The configuration.
    pub const fn config(&self) -> &BodyLimitConfig<M> {
        &self.config
    }
}

impl<S, M: Copy> Layer<S> for BodyLimitLayer<M> {
    type Service = BodyLimit<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit::new(inner, self.config)
    }
}
