-- A checkout retried with the same Idempotency-Key finds its first order instead of making a
-- second one (and charging the card again).
ALTER TABLE orders ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key);
-- The reconciler looks for orders left pending.
CREATE INDEX orders_pending ON orders (updated_at) WHERE status = 'pending';
