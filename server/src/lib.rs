//! shopdiff's runtime and binary: timely workers, the views' dataflows, view stores, and the
//! `shopdiff` command line. The only crate that sees all the others.

pub mod alerts_task;
pub mod auth;
pub mod cdc;
pub mod cli;
pub mod cli_cluster;
pub mod cli_kafka;
pub mod cli_pg;
pub mod cluster;
pub mod http;
pub mod kafka_driver;
pub mod live;
pub mod metrics;
pub mod runtime;
pub mod sink_task;
pub mod store;

pub use runtime::{ClusterConfig, Engine, EngineConfig};
pub use store::{AnyView, Stores};

/// mimalloc for every binary that links the engine: the dataflows allocate and free many small
/// vectors and strings per record, where glibc's allocator took about a tenth of the workers'
/// samples. Measured in one window (README, "Performance", round 3): all views 10-14% faster, peak RSS
/// about 10% higher.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to return freed pages to the OS (`purge_delay = -1`; mimalloc's
/// default returns them after 10 ms). The dataflows free and reallocate large buffers (batches
/// of records, sorted update vectors) all the time; each returned page came back as a fresh
/// page fault with the kernel zeroing 2 MiB huge pages, 12% of a replay's samples
/// (`clear_page_erms`). Measured in one window (README, "Performance", round 3): revenue and data quality
/// 268k -> 305-312k records/s, all views 179k -> 190k, peak RSS about 8% higher. The price: a
/// process keeps its peak memory. Called by [`Engine::start`]; the environment variable
/// `MIMALLOC_PURGE_DELAY`, when set, wins.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // `mi_option_purge_delay` (15 in mimalloc 2 and 3's `mi_option_t`)
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        // SAFETY: sets a global option of the allocator this binary links; mimalloc reads it
        // atomically at each purge decision, so setting it while other threads allocate is fine
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1)
        };
    });
}
