-- One points movement, one operation per transaction: the statements the API's
-- write path runs for POST /api/v1/public/customers/transactions with an
-- Idempotency-Key (look for a reply stored under the key, find the customer,
-- lock and check the balance, update it, append the entry, write the event,
-- add to the day's rollup, store the key with its reply).
\set m random(1, :merchants)
\set c random(1, :customers_per_merchant)
\set d random(-5, 10)
\set d CASE WHEN :d = 0 THEN 1 ELSE :d END
\set s random(0, 7)
\set k random(1, 9000000000000000)
BEGIN;
SELECT response_status, response_body FROM idempotency_keys
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND key = 'pgb-' || :client_id || '-' || :k;
SELECT id AS customer_uuid FROM customers
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND external_id = 'c' || :c \gset
SELECT points_balance_minor AS balance, lifetime_points_minor AS lifetime, last_sequence AS seq FROM customer_balances
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND customer_id = :customer_uuid FOR UPDATE \gset
UPDATE customer_balances SET points_balance_minor = points_balance_minor + :d * 100,
    lifetime_points_minor = lifetime_points_minor + greatest(:d * 100, 0),
    last_sequence = last_sequence + 1, updated_at = now()
  WHERE merchant_id = ('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid AND customer_id = :customer_uuid
    AND last_sequence = :seq AND points_balance_minor + :d * 100 >= 0;
INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind, description, internal_note,
    visible_to_customer, apply_to_lifetime, lifetime_delta_minor, balance_after_minor, expires_at, actor, created_at)
  VALUES (('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid, gen_random_uuid(), :customer_uuid, :seq + 1,
    :d * 100, 'adjustment', 'benchmark', NULL, true, :d > 0, greatest(:d * 100, 0), :balance + :d * 100, NULL,
    'api_key' || chr(58) || 'pgbench', now());
INSERT INTO events (merchant_id, id, type, subject_id, payload, actor, created_at)
  VALUES (('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid, gen_random_uuid(), 'transaction.created', :customer_uuid,
    '{"transaction":{"points":' || :d || '}}', 'api_key' || chr(58) || 'pgbench', now());
INSERT INTO daily_rollups AS r (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
  VALUES (('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid, (now() AT TIME ZONE 'UTC')::date,
    'entry' || chr(58) || 'adjustment', :s, greatest(:d * 100, 0), greatest(0 - :d * 100, 0), 1)
  ON CONFLICT (merchant_id, day, metric, shard) DO UPDATE SET plus_minor = r.plus_minor + excluded.plus_minor,
    minus_minor = r.minus_minor + excluded.minus_minor, count = r.count + 1;
INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint, response_status, response_body, created_at)
  VALUES (('00000000-0000-7000-8000-' || lpad(:m::text, 12, '0'))::uuid, 'pgb-' || :client_id || '-' || :k, repeat('f', 64), 201, '{"data":{}}', now())
  ON CONFLICT DO NOTHING;
END;
