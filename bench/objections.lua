-- PUT /v1/objections/BENCH-OBJ-<i> for i = 1..OBJECTIONS (default 10000) into an empty
-- registry; once all have answered 201 it prints "created=N" (and the first answer that
-- was neither 201 nor 200, if any) and ends wrk: os.exit, as wrk would otherwise run for
-- all of -d. Run with one wrk thread (-t1): the counter is that thread's. Every second
-- objection names a synthetic NHS number 9xxxxxxxxx with a valid modulus-11 check digit,
-- never SKIP_NHS (the traced person's).
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
local n = tonumber(os.getenv("OBJECTIONS") or "10000")
local skip = os.getenv("SKIP_NHS") or ""
local sent, created, first_bad = 0, 0, ""

-- The check digit of a 9-digit stem, or nil when it would be 10 (no valid number).
local function check_digit(stem)
  local s, sum = tostring(stem), 0
  for k = 1, 9 do sum = sum + tonumber(s:sub(k, k)) * (11 - k) end
  local c = 11 - sum % 11
  if c == 11 then return 0 elseif c == 10 then return nil end
  return c
end

local function nhs_number(i)
  local stem = 987000000 + i * 17
  while true do
    local c = check_digit(stem)
    if c ~= nil and (tostring(stem) .. c) ~= skip then return tostring(stem) .. c end
    stem = stem + 1
  end
end

-- wrk calls request() once before sending anything, to check it, and drops that request:
-- call 0 is a harmless GET (200), so that exactly n PUTs go out either way.
function request()
  local i = sent
  sent = sent + 1
  if i < 1 or i > n then -- also while the last answers are still coming
    return wrk.format("GET", "/v1/objections/BENCH-OBJ-1")
  end
  local body = i % 2 == 1
    and string.format('{"recorded_by":"bench","nhs_number":"%s"}', nhs_number(i))
    or '{"recorded_by":"bench","note":"bench objection"}'
  return wrk.format(nil, string.format("/v1/objections/BENCH-OBJ-%d", i), nil, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status ~= 200 and first_bad == "" then
    first_bad = string.format(" (first bad answer: %d %s)", status, body)
  end
  if created == n then
    io.write(string.format("created=%d%s\n", created, first_bad))
    io.flush()
    os.exit(0)
  end
end
