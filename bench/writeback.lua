-- POST /v1/trace of one fixed person (Jane Smith of the mock population), already cached.
-- WB_MODE picks the body:
--   plain  no case_id                                  (no objection check by case)
--   check  case_id BENCH-CASE, write_back false        (objection check, nothing queued)
--   queue  a new case_id per request, write_back true  (objection check, write-back queued);
--          with WB_LIMIT, only the first WB_LIMIT requests ask for a write-back, and once
--          WB_LIMIT have answered "queued" it prints "queued=Q bad=B" and ends wrk (os.exit:
--          wrk would otherwise run for all of -d). Use -t1 then: the count is per thread.
-- Prints p50_us, p99_us, the answers that were not 200 and matched (bad), and the
-- write-backs queued, summed over wrk's threads.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
local person = '"family":"Smith","given":["Jane"],"birth_date":"2010-10-22","gender":"female","postcode":"LS1 6AE"'
local mode = os.getenv("WB_MODE") or "plain"
local limit = tonumber(os.getenv("WB_LIMIT") or "0")
local tag = os.getenv("WB_TAG") or "q"

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

if mode == "plain" then
  wrk.body = "{" .. person .. "}"
elseif mode == "check" then
  wrk.body = '{"case_id":"BENCH-CASE","write_back":false,' .. person .. "}"
end

sent, bad, queued = 0, 0, 0
if mode == "queue" then -- otherwise wrk sends the one fixed request, built once
  -- wrk calls request() once before sending anything, to check it, and drops that request:
  -- call 0 asks for no write-back, so that at most WB_LIMIT do either way.
  function request()
    local i = sent
    sent = sent + 1
    local wb = i >= 1 and (limit == 0 or i <= limit) and "true" or "false"
    return wrk.format(nil, nil, nil, string.format(
      '{"case_id":"WB-%s-%d-%d","write_back":%s,%s}', tag, id, i, wb, person))
  end
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"outcome":"matched"', 1, true) then bad = bad + 1 end
  if body:find('"write_back":"queued"', 1, true) then queued = queued + 1 end
  if limit > 0 and queued == limit then
    io.write(string.format("queued=%d bad=%d\n", queued, bad))
    io.flush()
    os.exit(0)
  end
end

function done(summary, latency, requests)
  local b, q = 0, 0
  for _, t in ipairs(threads) do b = b + t:get("bad"); q = q + t:get("queued") end
  io.write(string.format("p50_us=%d p99_us=%d bad=%d queued=%d errors=%d\n",
    latency:percentile(50), latency:percentile(99), b, q,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout))
end
