//! [`StoreConfig`]: the caps and retention every backend enforces the same way.

use std::time::Duration;

use crate::taskflow::model::Flow;

/// Caps, retention and notification buffer of a store, whatever its backend.
///
/// `limits.store` in the configuration file (SPEC §2.5) deserialises onto it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub(crate) max_flows_per_owner: Option<usize>,
    pub(crate) max_tasks_per_flow: Option<usize>,
    pub(crate) max_bytes_per_owner: Option<usize>,
    pub(crate) retention: Option<Duration>,
    pub(crate) event_capacity: usize,
}

/// The name [`StoreConfig`] had when the in-memory store was the only one.
pub type MemoryStoreConfig = StoreConfig;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_flows_per_owner: Some(10_000),
            max_tasks_per_flow: Some(1_000),
            max_bytes_per_owner: Some(64 << 20),
            retention: Some(Duration::from_secs(7 * 24 * 60 * 60)),
            event_capacity: 1_024,
        }
    }
}

impl StoreConfig {
    /// Defaults: 10,000 flows per owner, 1,000 tasks per flow, 64 MiB (67,108,864 bytes) of flows
    /// and tasks per owner, 7 days of retention for terminal flows, 1,024 buffered change
    /// notifications per subscriber.
    pub fn new() -> Self {
        Self::default()
    }

    /// Most flows one owner may hold (terminal ones count until they expire); `None` for no cap.
    pub fn max_flows_per_owner(mut self, cap: Option<usize>) -> Self {
        self.max_flows_per_owner = cap;
        self
    }

    /// Most tasks one flow may hold (ended ones count); `None` for no cap.
    pub fn max_tasks_per_flow(mut self, cap: Option<usize>) -> Self {
        self.max_tasks_per_flow = cap;
        self
    }

    /// Most bytes one owner's flows and tasks may take, measured as their JSON text (`ownerKey`
    /// included); `None` for no cap.
    ///
    /// JSON size is deterministic and cheap to keep up to date (each record is measured once per
    /// write), but it is not heap size: parsed caller JSON takes more memory than its text, up to
    /// tens of times more for an array of one-digit numbers. Size the cap with that in mind.
    pub fn max_bytes_per_owner(mut self, cap: Option<usize>) -> Self {
        self.max_bytes_per_owner = cap;
        self
    }

    /// How long a terminal flow (and its tasks) is kept after it ended; `None` keeps everything.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Change notifications buffered per subscriber before the slowest one is told it lagged.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The retention period in milliseconds, if there is one.
    pub(crate) fn retention_millis(&self) -> Option<u64> {
        self.retention
            .map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX))
    }

    /// When `flow` expires, if it is terminal and there is a retention period: `retention` after
    /// `endedAt` (or `updatedAt` for a terminal flow without one).
    pub(crate) fn expiry(&self, flow: &Flow) -> Option<u64> {
        let retention = self.retention_millis()?;
        flow.status.is_terminal().then(|| {
            flow.ended_at
                .unwrap_or(flow.updated_at)
                .saturating_add(retention)
        })
    }

    /// Whether an owner holding `stored` bytes may replace a record of `old` bytes with one of
    /// `new` bytes (`old` is 0 for a new record). A change that does not grow is always allowed,
    /// even above the cap, so an owner pushed past it by embedding-side changes can still shrink.
    pub(crate) fn fits(&self, stored: usize, (old, new): (usize, usize)) -> bool {
        new <= old
            || self
                .max_bytes_per_owner
                .is_none_or(|cap| stored.saturating_sub(old).saturating_add(new) <= cap)
    }
}
