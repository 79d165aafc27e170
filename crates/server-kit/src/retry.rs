//! Retrying with doubling backoff: the one loop behind order-api's finishing writes,
//! payment-api's provider calls and the gateway's confirmation emails.

use std::future::Future;
use std::time::Duration;

/// At most `attempts` tries (at least 1), waiting `first_backoff` before the second and twice
/// as long before each one after.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Backoff {
    /// Calls `attempt(n)` for n = 1, 2, … until it succeeds, fails with an error `retry(&err,
    /// n)` does not want retried, or the attempts run out; answers with that last result.
    /// `retry` is asked only while attempts remain, so it is where a caller logs and counts a
    /// retry.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        mut retry: impl FnMut(&E, u32) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut wait = self.first_backoff;
        let mut n = 1;
        loop {
            match attempt(n).await {
                Err(err) if n < self.attempts && retry(&err, n) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    n += 1;
                }
                last => return last,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_what_it_is_told_to_with_doubling_waits_and_stops_at_the_bound() {
        let backoff = Backoff {
            attempts: 3,
            first_backoff: Duration::from_millis(100),
        };
        let began = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let out: Result<(), u32> = backoff
            .run(
                |n| {
                    seen.push((n, began.elapsed().as_millis()));
                    async move { Err(n) }
                },
                |_, _| true,
            )
            .await;
        assert_eq!(out, Err(3), "the last attempt's error");
        assert_eq!(seen, vec![(1, 0), (2, 100), (3, 300)]);

        // An error it is told not to retry ends it at once; a success ends it too.
        let mut calls = 0;
        let out: Result<(), &str> = backoff
            .run(
                |_| {
                    calls += 1;
                    async { Err("fatal") }
                },
                |_, _| false,
            )
            .await;
        assert_eq!((out, calls), (Err("fatal"), 1));
        let out: Result<u32, ()> = backoff.run(|n| async move { Ok(n) }, |_, _| true).await;
        assert_eq!(out, Ok(1));
    }
}
