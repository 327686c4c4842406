//! Change notifications of every store: ids only, and a "re-read" signal.
//!
//! A notification names what changed, never its content: a subscriber re-reads the record
//! ([`TaskFlowStore::flow_by_id`](super::TaskFlowStore::flow_by_id),
//! [`get_task`](super::TaskFlowStore::get_task)) and sees it as it is *now*, which is the only
//! view a store shared by several processes can promise. Ids travel everywhere a record may not
//! (a PostgreSQL `NOTIFY` payload, a log line): they carry no caller data and no session key.
//!
//! A subscriber that may have missed notifications is told so with [`ChangeEvent::Lagged`]:
//! it fell behind the bounded buffer, or the backend lost its notification channel for a while
//! (a database reconnect). Either way the answer is the same: re-read what you care about.

use std::fmt;

use tokio::sync::broadcast;
use uuid::Uuid;

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A flow was created.
    FlowCreated,
    /// A flow changed.
    FlowUpdated,
    /// A terminal flow passed its retention period and was removed, with its tasks.
    FlowRemoved,
    /// A child task was created.
    TaskCreated,
    /// A child task changed.
    TaskUpdated,
    /// A child task was removed with its flow.
    TaskRemoved,
}

impl ChangeKind {
    const ALL: [(ChangeKind, &'static str); 6] = [
        (Self::FlowCreated, "flow_created"),
        (Self::FlowUpdated, "flow_updated"),
        (Self::FlowRemoved, "flow_removed"),
        (Self::TaskCreated, "task_created"),
        (Self::TaskUpdated, "task_updated"),
        (Self::TaskRemoved, "task_removed"),
    ];

    /// The spelling [`Change::encode`] uses.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("", |(_, text)| text)
    }

    fn is_task(self) -> bool {
        matches!(
            self,
            Self::TaskCreated | Self::TaskUpdated | Self::TaskRemoved
        )
    }
}

/// One change: which record, and what happened to it. Ids only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The flow, or the task's flow.
    pub flow_id: Uuid,
    /// The task, for the task kinds.
    pub task_id: Option<Uuid>,
}

impl Change {
    /// A change to a flow.
    pub fn flow(kind: ChangeKind, flow_id: Uuid) -> Self {
        Self {
            kind,
            flow_id,
            task_id: None,
        }
    }

    /// A change to a task of `flow_id`.
    pub fn task(kind: ChangeKind, flow_id: Uuid, task_id: Uuid) -> Self {
        Self {
            kind,
            flow_id,
            task_id: Some(task_id),
        }
    }

    /// A short text form for a backend's own channel (a PostgreSQL `NOTIFY` payload):
    /// `<kind> <flowId>[ <taskId>]`, at most 86 bytes.
    pub fn encode(&self) -> String {
        match self.task_id {
            Some(task) => format!("{} {} {}", self.kind.as_str(), self.flow_id, task),
            None => format!("{} {}", self.kind.as_str(), self.flow_id),
        }
    }

    /// Reads [`encode`](Self::encode)'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        let kind = ChangeKind::ALL
            .iter()
            .find(|(_, spelling)| *spelling == kind)?
            .0;
        let flow_id = Uuid::try_parse(parts.next()?).ok()?;
        let task_id = match parts.next() {
            Some(task) => Some(Uuid::try_parse(task).ok()?),
            None => None,
        };
        if parts.next().is_some() || kind.is_task() != task_id.is_some() {
            return None;
        }
        Some(Self {
            kind,
            flow_id,
            task_id,
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// What a subscriber receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A change was committed.
    Changed(Change),
    /// Some notifications may have been missed (the subscriber fell behind, or the backend's
    /// channel was interrupted): re-read whatever you track.
    Lagged,
}

/// Stores whose changes can be watched.
///
/// Every store of this crate implements it; what a subscription sees is the same whatever the
/// backend: one [`Change`] per committed change, in commit order per flow, delivered after the
/// commit, and [`ChangeEvent::Lagged`] where it cannot promise that nothing was missed. A
/// refused change (a stale revision, a cap) sends nothing.
pub trait ChangeFeed {
    /// A subscription that sees every change committed from now on (on every replica, for a
    /// shared backend).
    fn subscribe(&self) -> ChangeSubscription;
}

/// The sending side a backend keeps: fans changes out to every [`ChangeSubscription`].
///
/// Sending costs nothing while nobody subscribes.
#[derive(Clone)]
pub struct ChangeSender {
    sender: broadcast::Sender<ChangeEvent>,
}

impl fmt::Debug for ChangeSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeSender")
            .field("subscribers", &self.sender.receiver_count())
            .finish()
    }
}

impl ChangeSender {
    /// A sender that buffers `capacity` events per subscriber (at least 1) before the slowest one
    /// is told it lagged.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// A new subscription.
    pub fn subscribe(&self) -> ChangeSubscription {
        ChangeSubscription {
            receiver: self.sender.subscribe(),
        }
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tells every subscriber about `change`.
    pub fn send(&self, change: Change) {
        self.emit(ChangeEvent::Changed(change));
    }

    /// Tells every subscriber it may have missed changes (after a backend reconnect).
    pub fn lagged(&self) {
        self.emit(ChangeEvent::Lagged);
    }

    fn emit(&self, event: ChangeEvent) {
        if self.has_subscribers() {
            // An error means every receiver went away in between: nobody to tell.
            let _ = self.sender.send(event);
        }
    }
}

/// One subscriber's view of a [`ChangeFeed`].
#[derive(Debug)]
pub struct ChangeSubscription {
    receiver: broadcast::Receiver<ChangeEvent>,
}

impl ChangeSubscription {
    /// The next event; `None` once the store is gone.
    pub async fn recv(&mut self) -> Option<ChangeEvent> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(ChangeEvent::Lagged),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// The next event if one is waiting; `None` if none is (or the store is gone).
    pub fn try_recv(&mut self) -> Option<ChangeEvent> {
        match self.receiver.try_recv() {
            Ok(event) => Some(event),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(ChangeEvent::Lagged),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_refuses_anything_else() {
        let flow = Uuid::from_u128(1);
        let task = Uuid::from_u128(2);
        for change in [
            Change::flow(ChangeKind::FlowCreated, flow),
            Change::flow(ChangeKind::FlowUpdated, flow),
            Change::flow(ChangeKind::FlowRemoved, flow),
            Change::task(ChangeKind::TaskCreated, flow, task),
            Change::task(ChangeKind::TaskUpdated, flow, task),
            Change::task(ChangeKind::TaskRemoved, flow, task),
        ] {
            let text = change.encode();
            assert!(text.len() <= 86, "{text}");
            assert_eq!(Change::decode(&text), Some(change));
        }
        for bad in [
            "",
            "flow_created",
            "flow_created x",
            "nope 00000000-0000-0000-0000-000000000001",
            "task_created 00000000-0000-0000-0000-000000000001",
            "flow_created 00000000-0000-0000-0000-000000000001 00000000-0000-0000-0000-000000000002",
            "flow_created 00000000-0000-0000-0000-000000000001 ",
            "task_created 00000000-0000-0000-0000-000000000001 00000000-0000-0000-0000-000000000002 x",
        ] {
            assert_eq!(Change::decode(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_re_read() {
        let sender = ChangeSender::new(2);
        let mut subscription = sender.subscribe();
        for n in 0..3 {
            sender.send(Change::flow(ChangeKind::FlowUpdated, Uuid::from_u128(n)));
        }
        assert_eq!(subscription.recv().await, Some(ChangeEvent::Lagged));
        for n in 1..3 {
            let expected = Change::flow(ChangeKind::FlowUpdated, Uuid::from_u128(n));
            assert_eq!(
                subscription.recv().await,
                Some(ChangeEvent::Changed(expected))
            );
        }
        sender.lagged();
        assert_eq!(subscription.recv().await, Some(ChangeEvent::Lagged));
        assert_eq!(subscription.try_recv(), None);
        drop(sender);
        assert_eq!(subscription.recv().await, None);
    }
}
