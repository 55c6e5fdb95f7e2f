//! The server's async runtime: tokio's multi-threaded runtime with a bounded blocking pool.

use std::io;

/// Threads of tokio's blocking pool (local-store file I/O, the computations of runs and
/// placements). Each keeps memory while it lives — its stack, faer/gemm's per-thread
/// cache slab, its malloc arena — and under 64 concurrent clients tokio's default of 512
/// let the pool, and the server's RSS with it, grow for minutes (examples/load.rs; figures
/// in BENCHMARKS.md). Blocking tasks never wait on one another, so a full pool only queues
/// them; the runs themselves are bounded by the run queue anyway.
pub const MAX_BLOCKING_THREADS: usize = 64;

/// The runtime `clusterd serve` runs on.
pub fn build() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_blocking_pool_runs_at_most_its_cap_of_tasks_at_once() {
        let runtime = build().unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..MAX_BLOCKING_THREADS * 2)
                .map(|_| {
                    let (running, peak) = (running.clone(), peak.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= MAX_BLOCKING_THREADS,
            "{peak} blocking tasks ran at once"
        );
        // The pool is used, not serialised: tasks beyond the cap queue, the rest overlap.
        assert!(peak > 1, "{peak}");
    }
}
