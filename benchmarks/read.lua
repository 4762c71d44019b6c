-- wrk script: GET a path for a random customer (or a fixed path when `path` is set).
dofile(os.getenv("LOYALTY_BENCH_CONFIG"))
local read_path = os.getenv("LOYALTY_BENCH_PATH")

request = function()
  local m = math.random(1, #tokens)
  local c = math.random(1, customers_per_merchant)
  local headers = { ["Authorization"] = "Bearer " .. tokens[m] }
  local path = read_path
  if string.find(read_path, "?", 1, true) == nil and read_path ~= "/healthz" then
    path = read_path .. "?customer_id=c" .. c
  end
  return wrk.format("GET", path, headers)
end
