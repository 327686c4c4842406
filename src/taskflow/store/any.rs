//! [`AnyStore`]: the store a binary picks at runtime, as an enum rather than a `dyn` box.

use std::sync::Arc;

use serde_json::Value;

use super::changes::{ChangeFeed, ChangeSubscription};
use super::url::StoreUrl;
use super::{
    CancelOutcome, FlowEnd, MemoryStore, Mutation, MutationOutcome, NewFlow, NewTask,
    RunTaskOutcome, StoreConfig, StoreError, TaskFlowStore, TaskUpdate, TaskUpdateOutcome,
};
use crate::clock::SharedClock;
use crate::taskflow::model::{Flow, Task, TaskSummary};
use crate::taskflow::notify::CancelHook;

/// One of the crate's stores, chosen at runtime (the gateway's `store` setting).
///
/// An enum, not a `Box<dyn …>`: [`TaskFlowStore`]'s methods return `impl Future`, which a trait
/// object cannot name without boxing every future, and a `match` per call costs less than that
/// box. On [`Memory`](Self::Memory) every call is still answered without waiting.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// The in-memory store.
    Memory(MemoryStore),
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(super::SqliteStore),
    /// A PostgreSQL database, shared by every replica.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PostgresStore),
}

impl AnyStore {
    /// Opens the store `url` names with `config`, `clock` and `hook`. Blocking while a database
    /// store opens its file or connection: call it at startup.
    ///
    /// A backend this build lacks is an error naming its feature, never a silent fall back to
    /// memory.
    pub fn open(
        url: &StoreUrl,
        config: StoreConfig,
        clock: SharedClock,
        hook: Arc<dyn CancelHook>,
    ) -> Result<Self, StoreError> {
        match url {
            StoreUrl::Memory => Ok(Self::Memory(MemoryStore::build(config, clock, hook))),
            #[cfg(feature = "sqlite")]
            StoreUrl::Sqlite(path) => {
                super::SqliteStore::build(path, config, clock, hook).map(Self::Sqlite)
            }
            #[cfg(not(feature = "sqlite"))]
            StoreUrl::Sqlite(_) => Err(StoreError::PersistFailed(
                "built without the sqlite feature".into(),
            )),
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres(url) => open_postgres(url.expose(), config, clock, hook),
            #[cfg(not(feature = "postgres"))]
            StoreUrl::Postgres(_) => Err(StoreError::PersistFailed(
                "built without the postgres feature".into(),
            )),
        }
    }

    /// The in-memory store, if that is the one.
    pub fn as_memory(&self) -> Option<&MemoryStore> {
        match self {
            Self::Memory(store) => Some(store),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            _ => None,
        }
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

/// Connects a PostgreSQL store from the synchronous [`AnyStore::open`]: on a worker of a
/// multi-threaded Tokio runtime (the gateway's), which keeps the pool's and the change feed's
/// tasks once the store is open.
#[cfg(feature = "postgres")]
fn open_postgres(
    url: &str,
    config: StoreConfig,
    clock: SharedClock,
    hook: Arc<dyn CancelHook>,
) -> Result<AnyStore, StoreError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
        .ok_or_else(|| {
            StoreError::PersistFailed(
                "a PostgreSQL store is opened on a multi-threaded Tokio runtime".into(),
            )
        })?;
    let options = super::postgres::PostgresOptions::default();
    tokio::task::block_in_place(|| {
        handle.block_on(super::postgres::PostgresStore::build(
            url, config, options, clock, hook,
        ))
    })
    .map(AnyStore::Postgres)
}

#[cfg(feature = "postgres")]
impl From<super::postgres::PostgresStore> for AnyStore {
    fn from(store: super::postgres::PostgresStore) -> Self {
        Self::Postgres(store)
    }
}

#[cfg(feature = "sqlite")]
impl From<super::SqliteStore> for AnyStore {
    fn from(store: super::SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

/// Calls `$call` on whichever backend this is and awaits it: a store of [`AnyStore`], or (with
/// the enum named first) a ledger of `AnyLedger`, whose variants are named alike.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        each!(AnyStore: $self, $store => $call)
    };
    ($any:ident: $self:ident, $store:ident => $call:expr) => {
        match $self {
            $any::Memory($store) => $call.await,
            #[cfg(feature = "sqlite")]
            $any::Sqlite($store) => $call.await,
            #[cfg(feature = "postgres")]
            $any::Postgres($store) => $call.await,
        }
    };
}

impl ChangeFeed for AnyStore {
    fn subscribe(&self) -> ChangeSubscription {
        match self {
            Self::Memory(store) => store.subscribe(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => store.subscribe(),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => store.subscribe(),
        }
    }
}

impl TaskFlowStore for AnyStore {
    fn backend(&self) -> &'static str {
        match self {
            Self::Memory(store) => store.backend(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => store.backend(),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => store.backend(),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        each!(self, s => s.check())
    }

    async fn create_flow(&self, owner: &str, new: NewFlow) -> Result<Flow, StoreError> {
        each!(self, s => s.create_flow(owner, new))
    }

    async fn get_flow(&self, owner: &str, flow_id: &str) -> Result<Option<Flow>, StoreError> {
        each!(self, s => s.get_flow(owner, flow_id))
    }

    async fn list_flows(&self, owner: &str) -> Result<Vec<Arc<Flow>>, StoreError> {
        each!(self, s => s.list_flows(owner))
    }

    async fn find_latest_flow(&self, owner: &str) -> Result<Option<Flow>, StoreError> {
        each!(self, s => s.find_latest_flow(owner))
    }

    async fn resolve_flow(&self, owner: &str, token: &str) -> Result<Option<Flow>, StoreError> {
        each!(self, s => s.resolve_flow(owner, token))
    }

    async fn mutate_flow(
        &self,
        owner: &str,
        flow_id: &str,
        expected_revision: u64,
        mutation: Mutation,
    ) -> Result<MutationOutcome, StoreError> {
        each!(self, s => s.mutate_flow(owner, flow_id, expected_revision, mutation))
    }

    async fn run_task(
        &self,
        owner: &str,
        flow_id: &str,
        new: NewTask,
    ) -> Result<RunTaskOutcome, StoreError> {
        each!(self, s => s.run_task(owner, flow_id, new))
    }

    async fn cancel_flow(&self, owner: &str, flow_id: &str) -> Result<CancelOutcome, StoreError> {
        each!(self, s => s.cancel_flow(owner, flow_id))
    }

    async fn task_summary(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> Result<Option<TaskSummary>, StoreError> {
        each!(self, s => s.task_summary(owner, flow_id))
    }

    async fn list_tasks(
        &self,
        owner: &str,
        flow_id: &str,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        each!(self, s => s.list_tasks(owner, flow_id))
    }

    async fn flow_by_id(&self, flow_id: &str) -> Result<Option<Flow>, StoreError> {
        each!(self, s => s.flow_by_id(flow_id))
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        each!(self, s => s.get_task(task_id))
    }

    async fn update_task(
        &self,
        task_id: &str,
        update: TaskUpdate,
    ) -> Result<TaskUpdateOutcome, StoreError> {
        each!(self, s => s.update_task(task_id, update))
    }

    async fn end_flow(
        &self,
        flow_id: &str,
        end: FlowEnd,
        state_json: Option<Value>,
    ) -> Result<Option<Flow>, StoreError> {
        each!(self, s => s.end_flow(flow_id, end, state_json))
    }

    async fn sweep_expired(&self) -> Result<usize, StoreError> {
        each!(self, s => s.sweep_expired())
    }
}

/// Where the gateway keeps event routes' idempotency keys: beside the flows, in the store
/// [`AnyStore`] opened, so de-duplication survives a restart on SQLite and holds across replicas
/// on PostgreSQL. On the in-memory store, a [`MemoryLedger`](crate::events::MemoryLedger).
#[cfg(feature = "events")]
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyLedger {
    /// Keys in this process's memory.
    Memory(crate::events::MemoryLedger),
    /// Keys in the SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(super::SqliteStore),
    /// Keys in the PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PostgresStore),
}

#[cfg(feature = "events")]
impl AnyLedger {
    /// The ledger that goes with `store`; on memory, one reading `clock`.
    pub fn for_store(store: &AnyStore, clock: SharedClock) -> Self {
        match store {
            AnyStore::Memory(_) => {
                Self::Memory(crate::events::MemoryLedger::new().with_clock(clock))
            }
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(store) => Self::Sqlite(store.clone()),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => Self::Postgres(store.clone()),
        }
    }
}

#[cfg(feature = "events")]
mod any_ledger {
    use std::time::Duration;

    use super::AnyLedger;
    use crate::events::{Begin, Claim, IdempotencyLedger, LedgerUnavailable};

    impl IdempotencyLedger for AnyLedger {
        async fn begin(
            &self,
            route: &str,
            key: &str,
            ttl: Duration,
        ) -> Result<Begin, LedgerUnavailable> {
            each!(AnyLedger: self, l => l.begin(route, key, ttl))
        }

        async fn complete(
            &self,
            route: &str,
            key: &str,
            claim: Claim,
        ) -> Result<(), LedgerUnavailable> {
            each!(AnyLedger: self, l => l.complete(route, key, claim))
        }

        async fn abandon(
            &self,
            route: &str,
            key: &str,
            claim: Claim,
        ) -> Result<(), LedgerUnavailable> {
            each!(AnyLedger: self, l => l.abandon(route, key, claim))
        }
    }
}
