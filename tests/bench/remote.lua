-- wrk: v1 single lookups. BENCH_PATH: the same lookup every time; BENCH_MISS: a path prefix
-- to which each request adds an address no one has asked before (a forwarded miss each
-- time, never answered from the cache), numbered per thread.
local path = os.getenv("BENCH_PATH")
local miss = os.getenv("BENCH_MISS")
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
function request()
  if miss == nil or miss == "" then
    return wrk.format("GET", path)
  end
  n = n + 1
  return wrk.format("GET", miss .. "nobody-" .. id .. "-" .. n .. "%40example.org")
end
