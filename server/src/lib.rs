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
pub mod health;
pub mod http;
pub mod kafka_driver;
pub mod live;
pub mod metrics;
pub mod runtime;
pub mod secrets;
pub mod sink_task;
pub mod store;

pub use runtime::{ClusterConfig, Engine, EngineConfig};
pub use store::{AnyView, Stores};

/// mimalloc for every binary that links the engine: the dataflows allocate and free many small
/// vectors and strings per record, where glibc's allocator took about a tenth of the workers'
/// samples. Measured in one window (`benches/reports/2026-12-05-rounds-1-8.md`, round 2): all
/// views 10-14% faster, peak RSS about 10% higher.
///
/// The `system-alloc` feature leaves the system's allocator in place, for heap profilers that
/// hook `malloc` (heaptrack, valgrind).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Two memory settings for a long-running engine; each has an environment variable that, when
/// set, leaves it to mimalloc (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ALLOW_THP`).
///
/// * Never return freed pages to the OS (`purge_delay = -1`; mimalloc's default returns them
///   after a delay). The dataflows free and reallocate large buffers (batches of records,
///   update vectors) all the time; each returned page came back as a fresh page fault, 12% of
///   a replay's samples (`clear_page_erms`). Measured in one window
///   (`benches/reports/2026-12-05-rounds-1-8.md`, round 3): revenue and data quality 268k ->
///   305-312k records/s, all views 179k -> 190k, peak RSS about 8% higher. The price: a
///   process keeps its peak memory.
/// * No transparent huge pages (`prctl(PR_SET_THP_DISABLE)`, Linux). With them, the first
///   touch of new memory makes the kernel zero a whole 2 MiB page; state that grows with each
///   update (a hash map that doubles, new keys) paid for that inside the update:
///   `clear_page_erms` under `do_huge_pmd_anonymous_page` was 27% of the workers' samples in
///   the 1,000-line update benchmark. (mimalloc's own `allow_thp` option is read before `main`,
///   when it has already reserved and advised its first arena, so it cannot be set here.)
///   Measured in one window (`benches/reports/2026-12-05-rounds-1-8.md`, round 5): median
///   20.5-22.2 -> 16.9-18.5 ms, p99 41-51 -> 23-26 ms, peak RSS 1,020 -> 870 MB; full replay
///   unchanged within noise.
///
/// Called by [`Engine::start`].
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `mi_option_purge_delay`: 15 in mimalloc 2's and 3's `mi_option_t`
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: sets a global option of the allocator this binary links; mimalloc reads
            // it atomically at each purge decision, so setting it while other threads allocate
            // is fine
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_option_set(PURGE_DELAY, -1)
            };
        }
        #[cfg(target_os = "linux")]
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` sets a flag of this process's
            // address space, checked by the kernel at each page fault; no memory is touched
            #[allow(unsafe_code)]
            let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
            if rc != 0 {
                tracing::debug!(
                    "prctl(PR_SET_THP_DISABLE) failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
}
