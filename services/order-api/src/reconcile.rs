//! The reconciler: no order stays `pending`. An order is pending between its INSERT and the
//! UPDATE that records its payment; if the database was away at that moment (and the retries
//! ran out), or the process died in between, the order is left pending, perhaps charged. Every
//! [`Reconciler::interval`] this asks payment-api what became of the charge made under the
//! order's key (the provider keeps it) and records that.

use std::time::Duration;

use payment_api::client::PaymentClient;
use tonic::Code;
use tracing::Instrument as _;

use crate::server::{OrderCounters, finish_with_retries};
use crate::store::Store;

/// Orders looked at per pass.
pub const BATCH: i64 = 100;

#[derive(Clone)]
pub struct Reconciler {
    pub store: Store,
    pub payments: PaymentClient,
    /// How old a pending order must be before it is reconciled: longer than any checkout can
    /// take (payment timeout + finish retries), so a live checkout is never raced.
    pub pending_bound: Duration,
    pub interval: Duration,
    /// Where settled orders and finishing retries are counted.
    pub counters: OrderCounters,
}

/// What a pass did: (paid, payment_failed, left for the next pass).
pub type Outcome = (usize, usize, usize);

impl Reconciler {
    /// One pass over the stale pending orders.
    pub async fn pass(&self) -> Result<Outcome, sqlx::Error> {
        let ids = self.store.stale_pending(self.pending_bound, BATCH).await?;
        if ids.is_empty() {
            return Ok((0, 0, 0));
        }
        let span = tracing::info_span!(
            "reconcilePendingOrders",
            otel.kind = "internal",
            app.orders.pending = ids.len() as i64
        );
        async {
            let (mut paid, mut failed, mut left) = (0, 0, 0);
            for id in &ids {
                let key = format!("order-{id}");
                let (status, payment_id, failure) = match self.payments.get_charge(&key).await {
                    Ok(charge) => ("paid", Some(charge.charge_id), None),
                    Err(s) if s.code() == Code::NotFound => {
                        ("payment_failed", None, Some("never charged".to_owned()))
                    }
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        ("payment_failed", None, Some(s.message().to_owned()))
                    }
                    Err(s) => {
                        tracing::warn!(order_id = %id, error = %s, "cannot reconcile yet");
                        left += 1;
                        continue;
                    }
                };
                finish_with_retries(
                    &self.store,
                    &self.counters,
                    id,
                    status,
                    payment_id.as_deref(),
                    failure.as_deref(),
                )
                .await?;
                tracing::info!(order_id = %id, status, "reconciled a pending order");
                if status == "paid" {
                    self.counters.reconciled_paid.inc();
                    paid += 1;
                } else {
                    self.counters.reconciled_payment_failed.inc();
                    failed += 1;
                }
            }
            Ok((paid, failed, left))
        }
        .instrument(span)
        .await
    }

    /// Runs passes until the task is dropped.
    pub async fn run(self) {
        loop {
            tokio::time::sleep(self.interval).await;
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %err, "reconciler pass failed; will retry");
            }
        }
    }
}
