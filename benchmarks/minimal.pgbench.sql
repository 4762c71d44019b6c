-- The reference movement of PERFORMANCE.md: look the customer up, update the
-- balance conditionally, insert the entry; one operation per transaction.
\set m random(1, :merchants)
\set c random(1, :customers_per_merchant)
\set d random(-5, 10)
\set d CASE WHEN :d = 0 THEN 1 ELSE :d END
BEGIN;
SELECT id AS customer_uuid FROM customers
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND external_id = 'c' || :c \gset
UPDATE customer_balances SET points_balance_minor = points_balance_minor + :d * 100,
    lifetime_points_minor = lifetime_points_minor + greatest(:d * 100, 0), last_sequence = last_sequence + 1
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND customer_id = :customer_uuid
    AND points_balance_minor + :d * 100 >= 0
  RETURNING last_sequence AS seq, points_balance_minor AS balance \gset
INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind, description, internal_note,
    visible_to_customer, apply_to_lifetime, lifetime_delta_minor, balance_after_minor, expires_at, created_at)
  VALUES (('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid, gen_random_uuid(), :customer_uuid, :seq,
    :d * 100, 'adjustment', 'benchmark', NULL, true, :d > 0, greatest(:d * 100, 0), :balance, NULL, now());
END;
