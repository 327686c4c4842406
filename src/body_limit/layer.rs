//! [`BodyLimitLayer`], [`BodyLimitConfig`] and the two mode markers.

use std::marker::PhantomData;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::Deserialize;
use tower_layer::Layer;

use super::service::BodyLimit;
use crate::limit::{InvalidLimit, at_least_a_millisecond, positive};
#[cfg(feature = "serde")]
use crate::limit::{deserialize_millis, deserialize_positive};

/// Mode marker: collect the whole body, then call the inner service with a
/// [`BufferedBody`](crate::body::BufferedBody). Rejections (413, 408, 400) are exact.
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

/// Limits of [`BodyLimit`] (SPEC §2 step 7), `limits.body` in the configuration file: a byte cap, a
/// total deadline from the start of reading, and the mode.
///
/// The mode is a type parameter because the two modes hand the inner service different request body
/// types; picking it here lets one `BodyLimitLayer::new(config)` infer the right service.
///
/// Plain data like every layer's configuration: fields, setters of the same name, and
/// [`validate`](Self::validate), which refuses a zero cap or a deadline under a millisecond naming
/// the field. Deserialises from `maxBytes` and `timeoutMs`.
///
/// ```
/// use std::time::Duration;
/// use tower_webhooks::body_limit::BodyLimitConfig;
/// let config = BodyLimitConfig::buffered().max_bytes(1_024).timeout(Duration::from_secs(5));
/// assert_eq!((config.max_bytes, config.timeout), (1_024, Duration::from_secs(5)));
/// assert_eq!(BodyLimitConfig::buffered().max_bytes(0).validate().unwrap_err().field(), "maxBytes");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct BodyLimitConfig<M = Buffered> {
    /// `maxBytes`: the largest body accepted. A body of exactly `max_bytes` bytes passes; one more
    /// byte is a 413. Default 262,144.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "deserialize_positive"))]
    pub max_bytes: usize,
    /// `timeoutMs`: the total time allowed to read the body. Default 15 s.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "timeoutMs", deserialize_with = "deserialize_millis")
    )]
    pub timeout: Duration,
    #[cfg_attr(feature = "serde", serde(skip))]
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

impl<M> Default for BodyLimitConfig<M> {
    fn default() -> Self {
        Self::with_defaults()
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
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets the total deadline for reading the body.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configuration if every field is usable, or the first that is not.
    pub fn validate(self) -> Result<Self, InvalidLimit> {
        positive("maxBytes", self.max_bytes as u64)?;
        at_least_a_millisecond("timeoutMs", self.timeout)?;
        Ok(self)
    }

    /// `self`, or a panic naming the field `validate` refuses.
    pub(crate) fn validated(self) -> Self {
        self.validate()
            .unwrap_or_else(|invalid| panic!("invalid BodyLimitConfig: {invalid}"))
    }
}

/// Layer of [`BodyLimit`]; the mode comes from the [`BodyLimitConfig`].
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer<M = Buffered> {
    config: BodyLimitConfig<M>,
}

impl<M> BodyLimitLayer<M> {
    /// A layer applying `config`.
    ///
    /// # Panics
    ///
    /// If `config` does not [`validate`](BodyLimitConfig::validate); the message names the field.
    pub fn new(config: BodyLimitConfig<M>) -> Self {
        Self {
            config: config.validated(),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &BodyLimitConfig<M> {
        &self.config
    }
}

impl<S, M: Copy> Layer<S> for BodyLimitLayer<M> {
    type Service = BodyLimit<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit::from_validated(inner, self.config)
    }
}
