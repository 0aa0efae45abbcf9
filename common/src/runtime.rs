//! How many runtime worker threads a member or a proxy runs.

/// `TOKIO_WORKER_THREADS` if set to a number above zero; else one fewer than the cores, at
/// least one. The core left over goes to the threads that are not the runtime's (RocksDB's
/// flushes and compactions, the raft log's fsync thread) and to the kernel's network work. On
/// two cores one worker spent 10–30% less CPU per request than two, most of it the cost of
/// waking the other worker (`docs/benchmarks.md`, session 18).
pub fn worker_threads() -> usize {
    let set = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    set.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    })
}
