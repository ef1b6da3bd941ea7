-- Generic wrk script for the AuthGate benchmark (bench/README.md).
--
--   wrk ... -s bench/scenario.lua URL -- METHOD PATH BODIES OFFSET [Header: value ...]
--
-- BODIES is a file with one request body per line ("-" = no body).  With more
-- than one line, each request takes the next line (starting after OFFSET), so
-- every connection polls / introspects a different item of a rotating set.
-- Every response status is counted; done() prints one "BENCH_JSON {...}" line
-- with the exact percentiles (wrk --latency prints no p95).

statuses = {}
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   method = args[1] or "GET"
   path = args[2] or "/"
   local file = args[3] or "-"
   cursor = tonumber(args[4] or "0")
   headers = {}
   for i = 5, #args do
      local k, v = string.match(args[i], "^([^:]+):%s*(.*)$")
      if k then headers[k] = v end
   end
   bodies = {}
   if file ~= "-" then
      for line in io.lines(file) do
         if line ~= "" then table.insert(bodies, line) end
      end
   end
   count = #bodies
   if count <= 1 then
      fixed = wrk.format(method, path, headers, bodies[1])
   end
end

function request()
   if fixed then return fixed end
   cursor = cursor + 1
   return wrk.format(method, path, headers, bodies[(cursor % count) + 1])
end

function response(status, hdrs, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local merged = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
         for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
      end
   end
   local parts = {}
   for k, v in pairs(merged) do
      table.insert(parts, string.format('"%d": %d', k, v))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, "p50": %d, "p75": %d, ' ..
      '"p90": %d, "p95": %d, "p99": %d}, "statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(95), latency:percentile(99),
      table.concat(parts, ", ")))
end
