use oxetcd_member::config::Config;

/// jemalloc, also for RocksDB (the crate's `override_allocator_on_supported_platforms`
/// replaces `malloc` process-wide): glibc's allocator cost a tenth of a member's CPU.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // clap errors (including --help) print themselves with the right exit code.
            if let Some(ce) = e.downcast_ref::<clap::Error>() {
                ce.exit();
            }
            eprintln!("oxetcd: {e:#}");
            std::process::exit(2);
        }
    };
    if cfg.version {
        print!("{}", oxetcd_member::member::version_text());
        return;
    }
    if let Err(e) = oxetcd_member::logging::init(&cfg) {
        eprintln!("oxetcd: {e:#}");
        std::process::exit(1);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxetcd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(oxetcd_member::member::run(cfg)) {
        tracing::error!("oxetcd: {e:#}");
        eprintln!("oxetcd: {e:#}");
        std::process::exit(1);
    }
}

/// The member's multi-threaded runtime. Without tokio's LIFO slot: a task woken by another runs
/// after the tasks queued before it, so the answers of one raft entry, woken together, are all
/// written into their connections before each connection's task flushes them (one `writev` per
/// connection, not per answer). Needs `--cfg tokio_unstable` (see `.cargo/config.toml`).
///
/// Half as many workers as cores, at least one (`TOKIO_WORKER_THREADS` sets the number): the
/// other cores are left to RocksDB's threads, the log's fsync thread and the blocking threads
/// that long applies and large reads run on (`apply::state`), none of which are workers. A
/// request hops between tasks (connection, proposer, raft core, state machine); on one worker
/// those hops are queue pushes, on two each one wakes the other worker's thread. On two cores
/// one worker spent 30% less CPU per put and answered a lone client's puts 25% faster
/// (`docs/benchmarks.md`, session 20). Long synchronous work on a worker would hold up every
/// other task (heartbeats included), so such work does not run on one.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads((cores / 2).max(1));
    }
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}
