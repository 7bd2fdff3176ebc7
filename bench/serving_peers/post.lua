-- wrk script for bench/serving.py: POST the JSON bodies of the file $BENCH_BODIES (one per
-- line) in turn, and print one summary line "BENCH_JSON {...}" with the latency percentiles
-- (microseconds) and the error counts when the run is done.
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  bodies[#bodies + 1] = line
end
local i = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p90_us": %.1f, '
      .. '"p99_us": %.1f, "max_us": %.1f, "mean_us": %.1f, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
