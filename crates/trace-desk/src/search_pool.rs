//! The threads searches and metrics queries run on: one per search slot, at a lower CPU
//! priority than intake, so on a busy machine a stream of searches slows itself rather than
//! span intake (the async workers that receive OTLP keep the normal priority).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use thread_priority::{ThreadPriority, ThreadPriorityValue};

/// The search threads' priority: thread-priority's cross-platform value 22 of 0..=99, which on
/// Linux is niceness 10 (a CFS weight of 110 against intake's 1024 at niceness 0: a search
/// competing with intake for a core gets about a tenth of it, and all of an idle core).
pub const SEARCH_THREAD_PRIORITY: u8 = 22;

/// The niceness [`SEARCH_THREAD_PRIORITY`] gives on Linux.
pub const SEARCH_THREAD_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailed {
    /// The job panicked (the message, when it had one).
    #[error("panicked: {0}")]
    Panicked(String),
    /// The pool's threads are gone (they could not be started).
    #[error("no search thread is running")]
    NoThreads,
}

/// A fixed set of lower-priority threads taking jobs from one queue.
#[derive(Debug)]
pub struct SearchPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl SearchPool {
    /// Starts `threads` (at least 1) threads named `desk-search-N`. A thread that cannot lower
    /// its priority still runs jobs (and logs why); one that cannot start is logged and left
    /// out.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("desk-search-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            // The pool was dropped: no more jobs.
                            Err(_) => break,
                        }
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "could not start a search thread"),
            }
        }
        Self {
            jobs,
            threads: started,
        }
    }

    /// Runs `work` on one of the threads and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        if self.threads == 0 {
            return Err(JobFailed::NoThreads);
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            });
            // The waiter may have gone (its request was dropped); nothing to tell then.
            let _ = done.send(out);
        });
        self.jobs.send(job).map_err(|_| JobFailed::NoThreads)?;
        match result.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(JobFailed::Panicked(message)),
            Err(_) => Err(JobFailed::NoThreads),
        }
    }
}

/// This thread's niceness (Linux: `/proc/thread-self/stat`, field 19).
fn niceness() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(16)?.parse().ok()
}

/// Sets niceness [`SEARCH_THREAD_NICENESS`], unless the desk already runs at that or lower a
/// priority (setting it would then raise the search threads above intake).
fn lower_priority() {
    if niceness().is_some_and(|n| n >= SEARCH_THREAD_NICENESS) {
        return;
    }
    let priority = ThreadPriorityValue::try_from(SEARCH_THREAD_PRIORITY)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(p))
                .map_err(|e| e.to_string())
        });
    if let Err(error) = priority {
        tracing::warn!(%error, "search thread keeps the normal priority");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn jobs_run_at_the_lower_priority_and_panics_are_reported() {
        let pool = SearchPool::new(2);
        let base = niceness().unwrap();
        let nice = pool.run(niceness).await.unwrap().unwrap();
        assert_eq!(nice, base.max(SEARCH_THREAD_NICENESS));
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("desk-search-")));
        let failed = pool.run(|| -> u32 { panic!("boom") }).await;
        assert_eq!(failed, Err(JobFailed::Panicked("boom".into())));
        // The thread survives a panicking job.
        assert_eq!(pool.run(|| 7).await, Ok(7));
        assert_eq!(pool.run(|| 8).await, Ok(8));
    }
}
