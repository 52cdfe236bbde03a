-- bench/load/tally.lua: POSTs BODY (a file) and tallies the answers by status.
-- usage: BODY=file.json wrk -s tally.lua URL
-- Prints one line, parsed by bench/load.sh:
--   TALLY {"requests":…,"rps":…,"p50_ms":…,"p99_ms":…,"max_ms":…,"connect":…,"read":…,
--          "write":…,"timeout":…,"status":{"200":…,"429":…},"no_retry_after":…}
local path = os.getenv("BODY")
local f = assert(io.open(path, "rb")); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  counts = {}
  no_retry_after = 0
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 429 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    no_retry_after = no_retry_after + 1
  end
end

function done(summary, latency, requests)
  local total, missing = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
    missing = missing + thread:get("no_retry_after")
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, string.format('"%d":%d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'TALLY {"requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":{%s},"no_retry_after":%d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ","), missing))
end
