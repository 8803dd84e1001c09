-- EventFlow bench: send one fixed request (a JSON POST by default), count the expected answers
-- (202 by default), write a JSON summary.
--
-- Configured through the environment, because wrk runs this file once per thread and once more
-- for setup()/done(), and hands its command-line arguments to the thread states only:
--   BENCH_BODY_FILE  file holding the request body (required; ignored for a GET)
--   BENCH_METHOD     optional: GET or POST (unset: POST)
--   BENCH_OK_STATUS  optional: the status counted as accepted (unset: 202)
--   BENCH_OUT        where done() writes its JSON summary (required)
--   BENCH_TOKEN      bearer token, or a whole Authorization value ("Basic …") (optional)
--   BENCH_IDS_DIR    optional: every thread appends the "id" of each 202 to a file in here
--   BENCH_RATE       optional: requests per second over all threads (unset: as fast as possible)
--   BENCH_THREADS    wrk's -t, to split BENCH_RATE between the threads

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local method = os.getenv("BENCH_METHOD")
wrk.method = (method and method ~= "") and method or "POST"
if wrk.method ~= "GET" then
  wrk.body = read_file(os.getenv("BENCH_BODY_FILE"))
  wrk.headers["Content-Type"] = "application/json"
end
local ok_status = tonumber(os.getenv("BENCH_OK_STATUS") or "") or 202
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  if string.find(token, " ", 1, true) then
    wrk.headers["Authorization"] = token
  else
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

-- Per-thread counters; done() reads them back from each thread state.
accepted = 0
statuses = {}
local ids_file = nil

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  local dir = os.getenv("BENCH_IDS_DIR")
  if dir and dir ~= "" then
    ids_file = assert(io.open(dir .. "/ids-" .. thread_no .. ".txt", "w"))
  end
end

function response(status, headers, body)
  if status == ok_status then
    accepted = accepted + 1
    if ids_file then
      local id = string.match(body, '"id"%s*:%s*"([^"]+)"')
      if id then ids_file:write(id, "\n") end
    end
  else
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

-- Pacing: each thread hands out send slots 1/rate apart; a connection that finishes a request
-- waits for the next free slot. When the server is slower than the rate, slots are already due
-- and the load is simply as fast as possible.
local rate = tonumber(os.getenv("BENCH_RATE") or "")
if rate and rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]]
  local now = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now) -- CLOCK_MONOTONIC
    return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
  end
  local interval_ms = 1000 * tonumber(os.getenv("BENCH_THREADS") or "1") / rate
  local next_slot = nil

  function delay()
    local t = now_ms()
    if next_slot == nil or next_slot < t - 1000 then
      -- Never bank more than a second of missed slots: no burst after a stall.
      next_slot = math.max(next_slot or t, t - 1000)
    end
    local wait = next_slot - t
    next_slot = next_slot + interval_ms
    if wait <= 0 then return 0 end
    return math.floor(wait + 0.5)
  end
end

local function json_object(map)
  local parts = {}
  for k, v in pairs(map) do
    table.insert(parts, string.format('"%s":%d', k, v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local total_accepted = 0
  local other = {}
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + (thread:get("accepted") or 0)
    for status, n in pairs(thread:get("statuses") or {}) do
      other[status] = (other[status] or 0) + n
    end
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"duration_us":%d,"requests":%d,"accepted":%d,"other_statuses":%s,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, total_accepted, json_object(other),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
  out:close()
end
