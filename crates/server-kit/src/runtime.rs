//! The Tokio runtime a fleet service runs on, sized for a small service rather than the
//! machine: tokio's defaults are a worker thread per core and up to 512 blocking threads, which
//! on a many-core host gives each of the fleet's six processes dozens of threads (each with its
//! stack and allocator arena) for a few hundred requests a second.

use std::num::NonZeroUsize;

/// Worker threads when `TOKIO_WORKER_THREADS` is unset: 2, or 1 on a one-core machine.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// `FLEET_MAX_BLOCKING_THREADS`'s default: the most threads `spawn_blocking` (file I/O, DNS
/// lookups) runs at once; past it blocking work queues. Tokio's own default is 512.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 16;

/// How many worker and blocking threads a service's runtime has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSize {
    pub worker_threads: usize,
    pub max_blocking_threads: usize,
}

impl RuntimeSize {
    /// From `TOKIO_WORKER_THREADS` (tokio's own variable, read here so its default can be
    /// small) and `FLEET_MAX_BLOCKING_THREADS`, each a whole number of at least 1.
    pub fn from_env() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Ok(Self {
            worker_threads: positive("TOKIO_WORKER_THREADS", DEFAULT_WORKER_THREADS.min(cores))?,
            max_blocking_threads: positive(
                "FLEET_MAX_BLOCKING_THREADS",
                DEFAULT_MAX_BLOCKING_THREADS,
            )?,
        })
    }

    /// A multi-threaded runtime of this size, with I/O and timers.
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .max_blocking_threads(self.max_blocking_threads)
            .enable_all()
            .build()
    }
}

fn positive(name: &str, default: usize) -> anyhow::Result<usize> {
    let raw = crate::env_or(name, &default.to_string());
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => anyhow::bail!("{name}: {raw:?} is not a whole number of at least 1"),
    }
}

/// A process's main future (a service's `run_from_env()`), boxed by the crate that defines it.
/// rustc does not export an async fn's body from its crate: a caller in another crate that
/// awaits it (a binary's `main`, `fleet run`) compiles the whole async call tree again. Behind
/// this box the body is compiled once, where it is written, and callers poll it through a
/// vtable; a cold build's `fleet` and service binaries went from the longest units to seconds
/// (docs/performance.md).
pub type ProcessMain =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + 'static>>;

/// Runs `main` (a service's process edge, e.g. `order_api::run_from_env()`) on a runtime sized
/// by [`RuntimeSize::from_env`]: what each service's `main` and `fleet run` call.
pub fn block_on_service(main: ProcessMain) -> anyhow::Result<()> {
    RuntimeSize::from_env()?.build()?.block_on(main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_has_the_size_it_was_given() {
        let rt = RuntimeSize {
            worker_threads: 1,
            max_blocking_threads: 2,
        }
        .build()
        .unwrap();
        assert_eq!(rt.metrics().num_workers(), 1);
        // Four blocking tasks that each wait for the last: with 2 blocking threads at most,
        // only 2 ever run at once.
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (running, most) = (running.clone(), most.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
