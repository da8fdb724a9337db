-- Shared by bench/wrk/track.lua and bench/wrk/batch.lua (loaded with dofile from the same
-- directory). Builds realistic Segment track messages of about 600 bytes with a unique
-- messageId per message, and reports what wrk measured as one JSON line from done().
--
-- Arguments (after wrk's `--`), all as key=value:
--   auth=<base64 of "writekey:">  Basic credentials (the write key as user name)
--   run=<id>                      prefix of every messageId; must differ between runs on the
--                                 same data directory, or the server measures deduplication
--   path=/v1/track|/v1/batch      the request path (nginx gets the same path and body)
--   events=<n>                    messages per request: 1 sends one track call as the body,
--                                 n > 1 sends {"batch":[n messages]}
--   delay_ms=<x>                  pause before each request on a connection (float, ms); 0 or
--                                 absent = closed loop at full speed (no delay() hook at all)
--   pause=exp                     draw each pause from an exponential distribution of mean
--                                 delay_ms (independent clients, Poisson arrivals) instead of
--                                 pausing delay_ms every time
--   label=<text>                  copied into the JSON line
--
-- Output (from done(), main thread): one line starting with "WRK_JSON " followed by a JSON
-- object: requests completed, requests sent (request() calls, including ones still in flight
-- when wrk stopped), duration, socket errors, non-2xx/3xx responses, latency percentiles (us).

local common = {}

local function parse_args(args)
  local out = {}
  for _, a in ipairs(args or {}) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

local USERS = 200000 -- userIds are spread over this many users

local events = {
  {"Product Viewed", '"product_id":"sku-%d","name":"Ergonomic Office Chair","price":249.99,"currency":"USD","category":"Furniture","brand":"Sitwell"', "/products/ergonomic-office-chair", "Ergonomic Office Chair | Shop"},
  {"Product Added", '"product_id":"sku-%d","name":"Standing Desk Pro","price":599.0,"currency":"USD","quantity":1,"category":"Desks","variant":"oak"', "/products/standing-desk-pro", "Standing Desk Pro | Shop"},
  {"Checkout Started", '"order_id":"ord-%d","value":848.99,"revenue":848.99,"currency":"USD","coupon":"SPRING10","items":2', "/checkout", "Checkout | Shop"},
  {"Order Completed", '"order_id":"ord-%d","total":764.09,"revenue":764.09,"shipping":0,"tax":61.2,"currency":"USD","coupon":"SPRING10"', "/checkout/thank-you", "Thank you | Shop"},
  {"Video Progress", '"video_id":"vid-%d","title":"Product demo: journeys in 5 minutes","percent":75,"position":225,"length":300', "/demo", "Watch the demo | nudge"},
  {"Signed Up", '"plan":"trial","source_id":"src-%d","method":"email","referrer_code":"FRIEND-2024","newsletter":true', "/signup", "Create your account"},
  {"Form Submitted", '"form_id":"form-%d","form_name":"Contact sales","company_size":"51-200","role":"Head of Growth"', "/contact-sales", "Contact sales | nudge"},
  {"Pricing Viewed", '"plan_shown":"growth","billing":"annual","experiment":"pricing-v3","variant_id":%d,"currency":"EUR"', "/pricing", "Pricing | nudge"},
}

local agents = {
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
}

local campaigns = {
  {"spring_sale", "newsletter", "email"},
  {"brand_search", "google", "cpc"},
  {"retargeting_q2", "linkedin", "paid_social"},
  {"product_hunt_launch", "producthunt", "referral"},
}

-- Precomputed message tails (everything after userId), so that building a message costs a
-- few string concatenations and no formatting of the large constant parts.
local tails = {}

local function build_tails(typed)
  local n = 0
  for ei, e in ipairs(events) do
    for ai, agent in ipairs(agents) do
      for ci, c in ipairs(campaigns) do
        n = n + 1
        local props = string.format(e[2], 10000 + n * 37)
        local ip = string.format("203.0.%d.%d", (n * 7) % 256, (n * 13) % 254 + 1)
        tails[n] = string.format(
          '"event":"%s","properties":{%s},"context":{"ip":"%s","userAgent":"%s",' ..
          '"page":{"path":"%s","url":"https://www.example.com%s","title":"%s"},' ..
          '"campaign":{"name":"%s","source":"%s","medium":"%s"},' ..
          '"library":{"name":"analytics.js","version":"4.1.0"}},' ..
          '"timestamp":"2024-05-%02dT%02d:%02d:%02d.%03dZ"}',
          e[1], props, ip, agent, e[3], e[3], e[4], c[1], c[2], c[3],
          1 + n % 28, n % 24, n % 60, (n * 7) % 60, (n * 11) % 1000)
      end
    end
  end
  local head = typed and '{"type":"track","messageId":"' or '{"messageId":"'
  return head, n
end

-- Installs wrk's global hooks (init, request, delay, setup, done) for a script that sends
-- `default_events` messages per request (1 = /v1/track body, more = a /v1/batch body).
function common.install(default_path, default_events)
  local threads = {}
  local next_id = 0

  function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
  end

  function init(args)
    local a = parse_args(args)
    local n_events = tonumber(a.events or default_events)
    local path = a.path or default_path
    local prefix = (a.run or "run") .. "-" .. tostring(tid or 0) .. "-"
    local head, n_tails = build_tails(n_events > 1)
    -- The request head is built once (wrk.format would rebuild it on every request).
    local head_http = "POST " .. path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/json\r\nAuthorization: Basic " .. (a.auth or "") ..
      "\r\nContent-Length: "
    math.randomseed(12345 + (tid or 0))
    local random = math.random
    local counter = 0
    sent = 0 -- globals: read by done() through thread:get()
    body_bytes = 0

    local function message()
      counter = counter + 1
      return head .. prefix .. counter .. '","userId":"user-' .. random(USERS) .. '",' ..
        tails[random(n_tails)]
    end

    if n_events == 1 then
      request = function()
        sent = sent + 1
        local body = message()
        body_bytes = body_bytes + #body
        return head_http .. #body .. "\r\n\r\n" .. body
      end
    else
      -- One table.concat per request, no intermediate string per message.
      local parts = {}
      local uid_sep = '","userId":"user-'
      request = function()
        sent = sent + 1
        local k = 1
        parts[1] = '{"batch":['
        for i = 1, n_events do
          counter = counter + 1
          parts[k + 1] = i == 1 and head or "," .. head
          parts[k + 2] = prefix
          parts[k + 3] = counter
          parts[k + 4] = uid_sep
          parts[k + 5] = random(USERS)
          parts[k + 6] = '",'
          parts[k + 7] = tails[random(n_tails)]
          k = k + 7
        end
        parts[k + 1] = "]}"
        local body = table.concat(parts, "", 1, k + 1)
        body_bytes = body_bytes + #body
        return head_http .. #body .. "\r\n\r\n" .. body
      end
    end

    -- wrk's timers have millisecond resolution: a pause of x ms is rounded up or down at
    -- random so that its mean is x.
    local floor = math.floor
    local function whole_ms(x)
      local base = floor(x)
      if random() < x - base then return base + 1 end
      return base
    end
    local d = tonumber(a.delay_ms or "0")
    if d > 0 and a.pause == "exp" then
      -- Independent clients: each pause drawn from an exponential distribution of mean d, so
      -- that the connections' requests arrive as a Poisson stream instead of in step.
      local log = math.log
      delay = function() return whole_ms(-d * log(1 - random())) end
    elseif d > 0 then
      delay = function() return whole_ms(d) end
    end
  end

  function done(summary, latency, requests)
    local sent_total, bytes_total = 0, 0
    for _, t in ipairs(threads) do
      sent_total = sent_total + (t:get("sent") or 0)
      bytes_total = bytes_total + (t:get("body_bytes") or 0)
    end
    local e = summary.errors
    local function p(q) return latency:percentile(q) end
    io.write(string.format(
      'WRK_JSON {"requests":%d,"sent":%d,"sent_body_bytes":%d,"duration_us":%d,"bytes_read":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
      '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      summary.requests, sent_total, bytes_total, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency.mean, latency.stdev, latency.min, p(50), p(90), p(99), p(99.9), latency.max))
  end
end

return common
