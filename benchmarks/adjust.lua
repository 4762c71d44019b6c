-- wrk script: POST a points movement for a random (or the hot) customer.
-- Reads LOYALTY_BENCH_CONFIG, a Lua file defining `tokens` (one per merchant),
-- `customers_per_merchant` and `hot` (true: every request on customer c1 of merchant 1).
dofile(os.getenv("LOYALTY_BENCH_CONFIG"))
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))

request = function()
  counter = counter + 1
  local m, c = 1, 1
  if not hot then
    m = math.random(1, #tokens)
    c = math.random(1, customers_per_merchant)
  end
  local d = math.random(-5, 10)
  if d == 0 then d = 1 end
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[m],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. "-" .. counter,
  }
  local body = '{"points": ' .. d .. ', "description": "benchmark"}'
  return wrk.format("POST", "/api/v1/public/customers/transactions?customer_id=c" .. c, headers, body)
end
