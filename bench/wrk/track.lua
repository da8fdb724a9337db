-- wrk script: POST /v1/track, one ~600-byte Segment track message per request, each with a
-- unique messageId. Arguments and output: see common.lua. Example:
--   wrk -t1 -c32 -d10s -s bench/wrk/track.lua http://127.0.0.1:8080 -- auth=<b64> run=r1
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua").install("/v1/track", 1)
