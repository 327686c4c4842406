//! Memory per stored flow in `MemoryStore` at 100k flows, measured with a counting allocator.
//!
//! Run: `cargo run --release --example flow_memory`
//!
//! Counts live heap bytes (what the allocator was asked for, not allocator overhead or RSS) before
//! and after inserting 100,000 flows, for a minimal flow and for a typical webhook flow (goal,
//! current step, a small `stateJson`), then with one child task each.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use futures_util::FutureExt;
use serde_json::json;
use tower_webhooks::taskflow::{
    MemoryStore, MemoryStoreConfig, NewFlow, NewTask, Runtime, TaskFlowStore,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const FLOWS: usize = 100_000;
const OWNER: &str = "agent:main:hooks";

fn measure(label: &str, typical: bool, tasks: usize) {
    let store = MemoryStore::with_config(
        MemoryStoreConfig::new()
            .max_flows_per_owner(None)
            .max_tasks_per_flow(None),
    );
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..FLOWS {
        let mut new = NewFlow::new("webhooks/zapier", "triage the inbox");
        if typical {
            new.current_step = Some("fetch".into());
            new.state_json = Some(json!({"ticket": i, "source": "zapier"}));
        }
        let flow = store
            .create_flow(OWNER, new)
            .now_or_never()
            .unwrap()
            .unwrap();
        for _ in 0..tasks {
            let mut task = NewTask::new(Runtime::Subagent, "summarise the thread");
            task.run_id = Some(format!("run-{i}"));
            task.child_session_key = Some("agent:main:sub".into());
            store
                .run_task(OWNER, &flow.id_string(), task)
                .now_or_never()
                .unwrap()
                .unwrap();
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{label:<40} {:>8} bytes/flow ({:.1} MiB for {FLOWS} flows)",
        bytes / FLOWS as isize,
        bytes as f64 / (1024.0 * 1024.0)
    );
    assert_eq!(store.flow_count(), FLOWS);
}

fn main() {
    measure("minimal flow", false, 0);
    measure("typical flow (step + stateJson)", true, 0);
    measure("typical flow + 1 child task", true, 1);
}
