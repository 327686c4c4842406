//! The store conformance suite against `MemoryStore`.

#[path = "support/store_conformance.rs"]
mod store_conformance;
#[path = "support/store_model.rs"]
mod store_model;

use store_conformance::{Setup, StoreFactory};
use tower_webhooks::taskflow::MemoryStore;

struct Memory;

impl StoreFactory for Memory {
    type Store = MemoryStore;

    async fn open(&self, setup: Setup) -> MemoryStore {
        MemoryStore::build(setup.config, setup.clock, setup.hook)
    }
}

store_conformance::conformance_tests!(Some(Memory));
