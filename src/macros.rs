//! The crate's own macros: the accessors every middleware has, and the layers' diagnostics.

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose wrapped service is the field
/// `inner` of type `S` (`inner_service_accessors!()`), or `get_ref` and `get_mut` for a body
/// wrapper whose wrapped body is `inner` of type `B` (`inner_service_accessors!(body)`: unwrapping
/// it would drop what the wrapper guards).
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
    (body) => {
        /// The inner body.
        pub fn get_ref(&self) -> &B {
            &self.inner
        }

        /// The inner body, mutably.
        pub fn get_mut(&mut self) -> &mut B {
            &mut self.inner
        }
    };
}

// The layers' own diagnostics, written through `tracing` when the `tracing` feature is on and
// compiled out otherwise: a user who wants one layer does not pay for a logging facade they may
// not use (three crates of the 25 a layer may cost). The arguments are `tracing`'s (`%value`,
// `key = value`, a message); without the feature they are not evaluated.

// Each feature uses some of these: with only some layers on, the others go unused.
#[cfg(feature = "tracing")]
#[allow(unused_macros)]
macro_rules! trace_warn {
    ($($event:tt)*) => { ::tracing::warn!($($event)*) };
}

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)]
macro_rules! trace_warn {
    ($($event:tt)*) => {};
}

// Each feature uses some of these: with only some layers on, the others go unused.
#[cfg(feature = "tracing")]
#[allow(unused_macros)]
macro_rules! trace_debug {
    ($($event:tt)*) => { ::tracing::debug!($($event)*) };
}

#[cfg(not(feature = "tracing"))]
#[allow(unused_macros)]
macro_rules! trace_debug {
    ($($event:tt)*) => {};
}
