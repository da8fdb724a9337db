#!/usr/bin/env bash
# HTTP ingest benchmark: nudge's POST /v1/track and /v1/batch against nginx `return 204` fed
# the same bodies by the same wrk settings, in this one script. Prints one JSON object.
#
# Usage: bench/ingest_http.sh [BUILD_DIR]          (BUILD_DIR defaults to ./build)
#
# What runs, in order (one nginx, one nudge on a fresh data directory, both on 127.0.0.1):
#   warm-up     each server gets BENCH_WARMUP seconds of track traffic, not reported
#   track       nginx, then nudge: POST /v1/track, one ~640-byte track message per request;
#               then nudge at half load: throttled with wrk's delay() hook to about half the
#               request rate it reached at full load (a 3 s calibration run first measures
#               the latency to subtract from the per-connection pause), twice: with the same
#               pause on every connection ("in step"), then with pauses drawn at random
#               ("poisson", below)
#   batch       the same with POST /v1/batch, 20 such messages per request (~13 KB)
#   store       the store's own limit: the same event rows committed by SQLite alone
#               (bench/sqlite_events.cc, compiled here with g++ -O2) with nudge's events table
#               and indexes as its database declares them, then the table alone, each with as
#               many rows per commit and as many rows already stored as nudge's run had
# Acknowledged, then applied: nudge answers a request once it is committed to its ingest inbox
# and applies it to the store afterwards, in order (docs/ingest.md). Each nudge run reports the
# acknowledged rate (wrk's) and the applied rate: events stored / (run + the time the backlog
# took to drain after it). nudge runs with limits.max_backlog_events = BENCH_MAX_BACKLOG
# (4,000,000) and limits.max_backlog_bytes at its largest (2 GiB) so that no full-load run is
# refused with 503; half load is half the applied rate
# (above it the backlog only grows).
# Every message carries a unique messageId (run id, wrk thread, counter), so nudge stores
# every one and never takes the deduplication path; the script checks that it did.
#
# Durability check, after every nudge run (a run that fails it is a failed benchmark):
#   - wrk saw no socket error, no timeout and no non-2xx response;
#   - the events stored (GET /api/v1/workspace, before/after; it answers once every
#     acknowledged request is applied) are at least the events wrk got
#     an acknowledgement for and at most the events wrk sent. wrk stops on a timer, so up to
#     one request per connection is in flight at the end: the server commits it, wrk does not
#     count it. Exact equality is checked against the server's own counter instead:
#   - nudge_events_accepted_total grew by exactly the number of events stored, and
#     nudge_events_duplicate_total did not grow.
#
# Half load, in step and poisson. With the same pause on every connection, the 256
# connections fall into step: they are answered by the same commit, pause alike and send
# again together, so that the server sees ~256 requests at once and then nothing. With
# pauses drawn from an exponential distribution of the same mean (wrk script argument
# pause=exp), the connections are independent and their requests arrive as a Poisson stream
# at the same rate: the usual model of many independent clients. The aim's p99 at half load
# is taken from the poisson runs; the in-step runs are reported beside them.
#
# Settings (environment):
#   BENCH_WRK_THREADS=1  BENCH_WRK_CONNECTIONS=256  the same for nginx and nudge, every run
#   BENCH_DURATION=10    seconds per measured run;  BENCH_WARMUP=2;  BENCH_CALIBRATE=3
#   BENCH_HALF=0.5       the fraction of the applied rate for the latency runs
#   BENCH_MAX_BACKLOG=4000000  nudge's limits.max_backlog_events during the runs
#   BENCH_TMPDIR=/var/tmp   where the temporary nginx and nudge directories go. It must be a
#                        real disk: on tmpfs fsync costs nothing and the figures mean little
#                        (the output names the file system type).
#   BENCH_KEEP=1         keep the temporary directory (logs, wrk output) and print its path
#   NUDGE_HTTP_THREADS   passed through to nudge if set (default: nudge's own, 2)
#
# Why -t1 -c256. One wrk thread: on 2 cores every cycle wrk spends is taken from the server;
# one thread is at most one core, and -t2 lowered both servers' figures. 256 connections:
# nudge answers /v1/track only after the fsync of the group holding the request, so at full
# load about half of the connections wait on the commit in flight while the other half fill
# the next group; its track rate grows with the connection count until the writer thread runs
# out of CPU. Sweeping -c 16/32/64/128/256/512 (4 s runs, fresh data directory, 2-core VM)
# gave nudge track 8.3k/12-14k/8-11k/9-15k/10-20k/10k req/s and batch flat at 1.1-1.9k req/s
# (the writer thread is busy), nginx 54-99k track and 23-42k batch, with no trend beyond 32.
# 256 is where nudge's track rate stopped growing. It also makes the half-load runs closer to
# open-loop traffic: a closed loop of c connections can never queue more than c requests,
# so fewer connections would hide the bursts that real clients produce.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${1:-build}
[[ "$build" = /* ]] || build="$PWD/$build"
nudge_bin="$build/nudge"

threads=${BENCH_WRK_THREADS:-1}
conns=${BENCH_WRK_CONNECTIONS:-256}
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
calibrate=${BENCH_CALIBRATE:-3}
half=${BENCH_HALF:-0.5}
max_backlog=${BENCH_MAX_BACKLOG:-4000000}
batch_events=20

log() { echo "ingest_http: $*" >&2; }
die() {
  log "$*"
  printf '{"benchmark":"ingest_http","ok":false,"error":"%s"}\n' "${*//\"/\'}"
  exit 1
}

for tool in wrk nginx curl awk base64 sqlite3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (scripts/deps.sh bench)"
done
[ -x "$nudge_bin" ] || die "no nudge binary at $nudge_bin (build it first)"

# The store's reference (bench/sqlite_events.cc), rebuilt when its source is newer.
ref_bin="$build/bench/sqlite_events"
mkdir -p "$build/bench"
if [ ! -x "$ref_bin" ] || [ "$here/sqlite_events.cc" -nt "$ref_bin" ]; then
  log "compiling bench/sqlite_events.cc"
  g++ -O2 -std=c++20 -pthread "$here/sqlite_events.cc" -o "$ref_bin" -lsqlite3 ||
    die "cannot compile sqlite_events.cc"
fi

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/nudge-bench-http.XXXXXX")
nginx_pid=""
nudge_pid=""
cleanup() {
  [ -n "$nudge_pid" ] && kill -TERM "$nudge_pid" 2>/dev/null && wait "$nudge_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
# calc EXPR: floating-point arithmetic (awk), printed with %.6g unless FMT is given.
calc() { awk "BEGIN { printf \"${2:-%.6g}\", ($1) }"; }
# jnum JSON KEY: the first numeric value of "KEY": in a flat-enough JSON text.
jnum() { printf '%s' "$1" | grep -o "\"$2\":[-0-9.eE+]*" | head -1 | cut -d: -f2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  return 1
}
wait_http() {  # wait_http URL PID: until URL answers (any status) or PID dies; 10 s at most
  local i
  for i in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  return 1
}

clk_tck=$(getconf CLK_TCK)
# cpu_threads PID: "thread-name ticks" per thread of PID (utime+stime).
cpu_threads() {
  local f
  for f in /proc/"$1"/task/*/stat; do cat "$f" 2>/dev/null; done |
    awk '{ comm = $0; sub(/^[0-9]+ \(/, "", comm); sub(/\) .*$/, "", comm); gsub(/[ "\\]/, "_", comm);
           rest = $0; sub(/^.*\) /, "", rest); split(rest, a, " ");
           print comm, a[12] + a[13] }'
}
# cpu_procs PID: "name ticks" for PID and its direct children (nginx master + workers).
cpu_procs() {
  local f
  for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; done |
    awk -v pid="$1" '{ rest = $0; sub(/^.*\) /, "", rest); split(rest, a, " ");
           if ($1 == pid) print "master", a[12] + a[13];
           else if (a[2] == pid) print "workers", a[12] + a[13] }'
}
# cpu_delta BEFORE AFTER SECONDS: JSON {"name": cores used, ...}, summed by name, and "total".
cpu_delta() {
  awk -v secs="$3" -v tck="$clk_tck" '
    FNR == NR { before[$1] += $2; next }
    { after[$1] += $2 }
    END {
      out = ""; total = 0
      for (k in after) {
        d = (after[k] - before[k]) / tck / secs; total += d
        out = out sprintf("%s\"%s\":%.2f", (out == "" ? "" : ","), k, d)
      }
      printf "{%s%s\"total\":%.2f}", out, (out == "" ? "" : ","), total
    }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}
# children_cpu: sets CHILD_CPU to the seconds of CPU used by this shell's finished children
# (wrk), from `times`, which must run in this shell and not in a $(...) subshell.
children_cpu() {
  times >"$tmp/times"
  CHILD_CPU=$(tail -1 "$tmp/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) {
      split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } printf "%.3f", s }')
}

# commit_floor_ms: the mean time of one durable SQLite commit of one ~600-byte row (WAL,
# synchronous=FULL, 200 autocommit inserts by the sqlite3 CLI, after 20 not timed) in the
# temporary directory: the disk's part of every group commit. On ext4 an fsync also writes
# back other processes' pending data, so on a shared machine it moves by 10x or more.
commit_floor_ms() {
  local db="$tmp/commit-floor.db" n=200 t0 t1 i
  # 20 commits first: the first fsync also flushes whatever the file system had pending.
  { echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(x);"
    for ((i = 0; i < 20; i++)); do echo "INSERT INTO t VALUES(randomblob(600));"; done
  } | sqlite3 "$db" >/dev/null
  t0=$(date +%s%N)
  { echo "PRAGMA synchronous=FULL;"
    for ((i = 0; i < n; i++)); do echo "INSERT INTO t VALUES(randomblob(600));"; done
  } | sqlite3 "$db"
  t1=$(date +%s%N)
  rm -f "$db" "$db-wal" "$db-shm"
  calc "($t1 - $t0) / 1e6 / $n" "%.3f"
}

# io_field PID NAME: a counter of /proc/PID/io (wchar: bytes passed to write(); write_bytes:
# bytes sent to the block device).
io_field() { awk -v n="$2:" '$1 == n { print $2 }' "/proc/$1/io" 2>/dev/null || echo 0; }

# metric TEXT NAME: the value of an unlabelled metric line "NAME value" (0 if absent).
metric() { printf '%s\n' "$1" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'; }
# histogram BEFORE AFTER NAME: the histogram's growth between two /metrics texts, as JSON:
# count, mean, p50/p90/p99 interpolated linearly inside the buckets (as Prometheus'
# histogram_quantile does; a quantile in the +Inf bucket reports the last finite bound), and
# the per-bucket counts. Times in ms when UNIT=ms (seconds histograms), raw otherwise.
histogram() {
  awk -v name="$3" -v unit="${4:-ms}" '
    function grab(line, arr,   le, v) {
      if (index(line, name "_bucket{le=\"") != 1) return 0
      le = line; sub(/^[^"]*"/, "", le); sub(/".*$/, "", le)
      v = line; sub(/^.* /, "", v)
      arr[le] = v
      if (!(le in seen)) { seen[le] = 1; order[++n] = le }
      return 1
    }
    FNR == NR { grab($0, b); if ($1 == name "_sum") sb = $2; next }
    { grab($0, a); if ($1 == name "_sum") sa = $2 }
    END {
      scale = unit == "ms" ? 1000 : 1
      total = a["+Inf"] - b["+Inf"]
      printf "{\"count\":%d", total
      if (total > 0) printf ",\"mean\":%.4g", (sa - sb) / total * scale
      split("50 90 99", qs, " ")
      for (qi = 1; qi <= 3; qi++) {
        q = qs[qi] / 100; rank = q * total; prev_le = 0; prev_c = 0; val = ""
        for (i = 1; i <= n && total > 0; i++) {
          le = order[i]; c = a[le] - b[le]
          if (c >= rank) {
            if (le == "+Inf") { val = prev_le } else {
              in_bucket = c - prev_c
              val = in_bucket > 0 ? prev_le + (le - prev_le) * (rank - prev_c) / in_bucket : le
            }
            break
          }
          if (le != "+Inf") prev_le = le
          prev_c = c
        }
        if (val == "") printf ",\"p%s\":null", qs[qi]; else printf ",\"p%s\":%.4g", qs[qi], val * scale
      }
      printf ",\"buckets_le\":{"
      for (i = 1; i <= n; i++) {
        le = order[i]; c = a[le] - b[le] - ((i > 1) ? a[order[i-1]] - b[order[i-1]] : 0)
        printf "%s\"%s\":%d", (i > 1 ? "," : ""), (le == "+Inf" ? "+Inf" : sprintf("%g", le * scale)), c
      }
      printf "}}"
    }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# ---------------------------------------------------------------- nginx
nginx_dir="$tmp/nginx"
mkdir -p "$nginx_dir"/{body,proxy,fastcgi,uwsgi,scgi}
nginx_port=""
for attempt in 1 2 3 4 5; do
  nginx_port=$(pick_port) || die "no free port"
  cat >"$nginx_dir/nginx.conf" <<EOF
# The reference server: reads the request (body included) and answers 204, nothing else.
daemon off;
master_process on;
worker_processes auto;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $nginx_dir/body;
  proxy_temp_path $nginx_dir/proxy;
  fastcgi_temp_path $nginx_dir/fastcgi;
  uwsgi_temp_path $nginx_dir/uwsgi;
  scgi_temp_path $nginx_dir/scgi;
  keepalive_requests 10000000;   # as nudge: never close a keep-alive connection itself
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$nginx_port;
    client_max_body_size 1m;
    location / {
      if (\$request_method != POST) { return 405; }
      return 204;
    }
  }
}
EOF
  nginx -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" \
    >"$nginx_dir/stdout" 2>&1 &
  nginx_pid=$!
  if wait_http "http://127.0.0.1:$nginx_port/" "$nginx_pid"; then break; fi
  kill -QUIT "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
  log "nginx did not start on port $nginx_port (attempt $attempt): $(tail -2 "$nginx_dir/error.log" 2>/dev/null)"
done
[ -n "$nginx_pid" ] || die "nginx did not start"
nginx_url="http://127.0.0.1:$nginx_port"

# ---------------------------------------------------------------- nudge
write_key="bench-write-$RANDOM$RANDOM"
admin_key="bench-admin-$RANDOM$RANDOM"
auth=$(printf '%s:' "$write_key" | base64 -w0)
data_dir="$tmp/data"
# A backlog bound large enough that no full-load run is refused (see "Acknowledged, then
# applied" above): the runs measure how fast nudge acknowledges, and how fast it applies.
printf 'limits:\n  max_backlog_events: %s\n  max_backlog_bytes: 2147483647\n' "$max_backlog" \
  >"$tmp/nudge.yaml"
NUDGE_WRITE_KEY="$write_key" NUDGE_ADMIN_KEY="$admin_key" NUDGE_LOG_LEVEL=warn \
  "$nudge_bin" serve --listen 127.0.0.1:0 --data "$data_dir" --config "$tmp/nudge.yaml" \
  >"$tmp/nudge.stdout" 2>"$tmp/nudge.stderr" &
nudge_pid=$!
nudge_port=""
for i in $(seq 1 100); do
  nudge_port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/nudge.stdout" 2>/dev/null | sed 's/.*://' || true)
  [ -n "$nudge_port" ] && break
  kill -0 "$nudge_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$nudge_port" ] || die "nudge did not start: $(tail -3 "$tmp/nudge.stderr")"
nudge_url="http://127.0.0.1:$nudge_port"
data_fs=$(findmnt -n -o FSTYPE -T "$data_dir" 2>/dev/null || stat -f -c %T "$data_dir")
[ "$data_fs" = tmpfs ] && log "WARNING: $data_dir is on tmpfs; fsync is free there, set BENCH_TMPDIR"

# workspace [MAX_SECONDS=10]: GET /api/v1/workspace, which answers once every acknowledged
# request is applied.
workspace() {
  curl -sf --max-time "${1:-10}" -H "Authorization: Bearer $admin_key" "$nudge_url/api/v1/workspace"
}
metrics() { curl -sf --max-time 10 "$nudge_url/metrics"; }

# ---------------------------------------------------------------- wrk runs
failures=()
run_seq=0

# wrk_run URL SCRIPT SECONDS [ARGS...]: runs wrk, sets WRK (its JSON line) and WRK_CPU
# (seconds of CPU wrk used).
wrk_run() {
  local url=$1 script=$2 secs=$3 out cpu0
  shift 3
  run_seq=$((run_seq + 1))
  out="$tmp/wrk-$run_seq.out"
  children_cpu
  cpu0=$CHILD_CPU
  wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s -s "$script" "$url" -- \
    auth="$auth" run="r$run_seq" "$@" >"$out" 2>&1 || true
  children_cpu
  WRK_CPU=$(calc "$CHILD_CPU - $cpu0" "%.3f")
  WRK=$(grep '^WRK_JSON ' "$out" | sed 's/^WRK_JSON //' || true)
  [ -n "$WRK" ] || die "wrk failed: $(tail -3 "$out")"
}

# run_json LABEL EVENTS_PER_REQUEST SERVER_CPU_JSON: the common part of a run's JSON.
run_json() {
  local reqs secs rps
  reqs=$(jnum "$WRK" requests)
  secs=$(calc "$(jnum "$WRK" duration_us) / 1e6")
  rps=$(calc "$reqs / $secs" "%.1f")
  printf '{"requests":%s,"seconds":%s,"requests_per_s":%s,"events_per_s":%s,' \
    "$reqs" "$(calc "$secs" "%.3f")" "$rps" "$(calc "$rps * $2" "%.1f")"
  printf '"request_body_bytes":%s,' "$(calc "$(jnum "$WRK" sent_body_bytes) / $(jnum "$WRK" sent)" "%.0f")"
  printf '"latency_ms":{"mean":%s,"p50":%s,"p90":%s,"p99":%s,"p999":%s,"max":%s},' \
    "$(calc "$(jnum "$WRK" mean) / 1000" "%.3f")" "$(calc "$(jnum "$WRK" p50) / 1000" "%.3f")" \
    "$(calc "$(jnum "$WRK" p90) / 1000" "%.3f")" "$(calc "$(jnum "$WRK" p99) / 1000" "%.3f")" \
    "$(calc "$(jnum "$WRK" p999) / 1000" "%.3f")" "$(calc "$(jnum "$WRK" max) / 1000" "%.3f")"
  printf '"errors":{"connect":%s,"read":%s,"write":%s,"timeout":%s,"non_2xx":%s},' \
    "$(jnum "$WRK" connect)" "$(jnum "$WRK" read)" "$(jnum "$WRK" write)" \
    "$(jnum "$WRK" timeout)" "$(jnum "$WRK" status)"
  printf '"cpu_cores":{"server":%s,"wrk":%s}}' "$3" "$(calc "$WRK_CPU / $secs" "%.2f")"
}

wrk_errors() {  # total of wrk's error counters
  echo $(( $(jnum "$WRK" connect) + $(jnum "$WRK" read) + $(jnum "$WRK" write) + \
           $(jnum "$WRK" timeout) + $(jnum "$WRK" status) ))
}

# nginx_run LABEL SCRIPT SECONDS EVENTS [ARGS...]: sets RUN (JSON) and RPS.
nginx_run() {
  local label=$1 script=$2 secs=$3 events=$4 c0 c1
  shift 4
  log "$label: nginx, ${secs}s"
  c0=$(cpu_procs "$nginx_pid")
  wrk_run "$nginx_url" "$script" "$secs" "$@"
  c1=$(cpu_procs "$nginx_pid")
  RUN=$(run_json "$label" "$events" "$(cpu_delta "$c0" "$c1" "$(calc "$(jnum "$WRK" duration_us) / 1e6")")")
  RPS=$(calc "$(jnum "$WRK" requests) / ($(jnum "$WRK" duration_us) / 1e6)" "%.1f")
  if [ "$(wrk_errors)" != 0 ]; then
    failures+=("$label/nginx: wrk reported errors")
    RUN="${RUN%\}},\"ok\":false}"
  fi
}

# nudge_run LABEL SCRIPT SECONDS EVENTS [ARGS...]: runs wrk against nudge, then the
# durability check; sets RUN (JSON), RPS, APPLIED_EPS and OK.
nudge_run() {
  local label=$1 script=$2 secs=$3 events=$4
  shift 4
  local ws0 ws1 m0 m1 c0 c1
  log "$label: nudge, ${secs}s"
  ws0=$(workspace) || die "GET /api/v1/workspace failed"
  m0=$(metrics) || die "GET /metrics failed"
  c0=$(cpu_threads "$nudge_pid")
  local wchar0 wbytes0 wchar1 wbytes1
  wchar0=$(io_field "$nudge_pid" wchar); wbytes0=$(io_field "$nudge_pid" write_bytes)
  wrk_run "$nudge_url" "$script" "$secs" "$@"
  c1=$(cpu_threads "$nudge_pid")
  # The requests in flight when wrk stopped get their acknowledgement (0.2 s); then the
  # workspace read answers once the backlog of acknowledged events is applied (at most 300 s):
  # the time from wrk's end to that answer is part of the applied rate.
  local t_end drain
  t_end=$(date +%s.%N)
  sleep 0.2
  ws1=$(workspace 300) || die "GET /api/v1/workspace failed"
  drain=$(calc "$(date +%s.%N) - $t_end" "%.3f")
  m1=$(metrics) || die "GET /metrics failed"
  wchar1=$(io_field "$nudge_pid" wchar); wbytes1=$(io_field "$nudge_pid" write_bytes)

  local secs_run reqs sent acked sent_ev stored accepted dups ok=true reasons=()
  secs_run=$(calc "$(jnum "$WRK" duration_us) / 1e6")
  reqs=$(jnum "$WRK" requests)
  sent=$(jnum "$WRK" sent)
  acked=$((reqs * events))
  sent_ev=$((sent * events))
  stored=$(( $(jnum "$ws1" events) - $(jnum "$ws0" events) ))
  accepted=$(( $(metric "$m1" nudge_events_accepted_total) - $(metric "$m0" nudge_events_accepted_total) ))
  dups=$(( $(metric "$m1" nudge_events_duplicate_total) - $(metric "$m0" nudge_events_duplicate_total) ))
  [ "$(wrk_errors)" = 0 ] || reasons+=("wrk reported errors or non-2xx responses")
  [ "$stored" -ge "$acked" ] || reasons+=("$((acked - stored)) acknowledged events are not stored")
  [ "$stored" -le "$sent_ev" ] || reasons+=("more events stored than sent")
  [ "$accepted" = "$stored" ] || reasons+=("nudge_events_accepted_total grew by $accepted, stored $stored")
  [ "$dups" = 0 ] || reasons+=("$dups messages were deduplicated")
  local reason_json=""
  if [ ${#reasons[@]} -gt 0 ]; then
    ok=false
    for r in "${reasons[@]}"; do
      reason_json+="${reason_json:+,}\"$r\""
      failures+=("$label/nudge: $r")
    done
    log "$label: FAILED: ${reasons[*]}"
  fi
  local commits group_sum group_n
  commits=$(( $(metric "$m1" nudge_store_commit_seconds_count) - $(metric "$m0" nudge_store_commit_seconds_count) ))
  group_sum=$(calc "$(metric "$m1" nudge_store_commit_group_writes_sum) - $(metric "$m0" nudge_store_commit_group_writes_sum)")
  group_n=$(( $(metric "$m1" nudge_store_commit_group_writes_count) - $(metric "$m0" nudge_store_commit_group_writes_count) ))
  RUN=$(run_json "$label" "$events" "$(cpu_delta "$c0" "$c1" "$secs_run")")
  RUN="${RUN%\}}"
  APPLIED_EPS=$(calc "$stored / ($secs_run + $drain)" "%.1f")
  RUN+=",\"applied\":{\"seconds_after_the_run\":$drain,\"events_per_s\":$APPLIED_EPS}"
  RUN+=",\"durability\":{\"ok\":$ok,\"events_acknowledged\":$acked,\"events_sent\":$sent_ev"
  RUN+=",\"events_stored\":$stored,\"events_accepted_counter\":$accepted,\"duplicates\":$dups"
  RUN+=",\"problems\":[$reason_json]}"
  RUN+=",\"stored_before\":{\"contacts\":$(jnum "$ws0" contacts),\"events\":$(jnum "$ws0" events)}"
  RUN+=",\"server\":{\"ack_ms\":$(histogram "$m0" "$m1" nudge_ingest_ack_seconds ms)"
  RUN+=",\"commit_ms\":$(histogram "$m0" "$m1" nudge_store_commit_seconds ms)"
  RUN+=",\"commits\":$commits,\"commits_per_s\":$(calc "$commits / $secs_run" "%.1f")"
  RUN+=",\"requests_per_commit\":$( [ "$group_n" -gt 0 ] && calc "$group_sum / $group_n" "%.2f" || echo null)"
  RUN+=",\"written_bytes_per_event\":{\"write_calls\":$( [ "$stored" -gt 0 ] && calc "($wchar1 - $wchar0) / $stored" "%.0f" || echo null)"
  RUN+=",\"to_device\":$( [ "$stored" -gt 0 ] && calc "($wbytes1 - $wbytes0) / $stored" "%.0f" || echo null)}}}"
  RPS=$(calc "$reqs / $secs_run" "%.1f")
  OK=$ok
}

# half_run LABEL SCRIPT EVENTS FULL_RPS [ARGS...]: measures nudge at about FULL_RPS*half.
# Each wrk connection loops: pause d, send, wait for the answer; so rate = conns / (d + L)
# with L the latency at that load. A calibration run at d0 = conns/target measures L; the
# measured run then uses d = conns/target - L. If it lands outside 0.8-1.2 of the target
# (a stall during the calibration, say), it is corrected from its own rate and run again once.
half_run() {
  local label=$1 script=$2 events=$3 full=$4
  shift 4
  local target d0 r0 lat d1 frac attempt
  target=$(calc "$full * $half" "%.1f")
  d0=$(calc "1000 * $conns / $target" "%.3f")
  nudge_run "$label-calibration" "$script" "$calibrate" "$events" "$@" delay_ms="$d0"
  r0=$RPS
  # The latency implied by the calibration, kept within [0, 0.9 d0].
  lat=$(calc "1000 * $conns / $r0 - $d0" "%.3f")
  lat=$(calc "$lat < 0 ? 0 : ($lat > 0.9 * $d0 ? 0.9 * $d0 : $lat)" "%.3f")
  d1=$(calc "$d0 - $lat" "%.3f")
  log "$label: target ${target} req/s; calibration at ${d0} ms pause gave ${r0} req/s; pause ${d1} ms"
  for attempt in 1 2; do
    nudge_run "$label" "$script" "$duration" "$events" "$@" delay_ms="$d1"
    frac=$(calc "$RPS / $target" "%.3f")
    [ "$(calc "$frac >= 0.8 && $frac <= 1.2" "%d")" = 1 ] && break
    [ "$attempt" = 2 ] && break
    lat=$(calc "1000 * $conns / $RPS - $d1" "%.3f")
    lat=$(calc "$lat < 0 ? 0 : ($lat > 0.9 * $d0 ? 0.9 * $d0 : $lat)" "%.3f")
    log "$label: ${RPS} req/s is ${frac} of the target; again with a pause of $(calc "$d0 - $lat" "%.3f") ms"
    d1=$(calc "$d0 - $lat" "%.3f")
  done
  RUN="${RUN%\}},\"target_requests_per_s\":$target,\"fraction_of_full_load\":$(calc "$RPS / $full" "%.3f")"
  RUN+=",\"pause_per_request_ms\":$d1,\"attempts\":$attempt}"
}

track_lua="$here/wrk/track.lua"
batch_lua="$here/wrk/batch.lua"
load_before=$(cut -d' ' -f1 /proc/loadavg)
floor_before=$(commit_floor_ms)

log "nginx on $nginx_url, nudge on $nudge_url (data on $data_fs), wrk -t$threads -c$conns -d${duration}s"
if [ "$warmup" != 0 ]; then
  log "warm-up ${warmup}s each"
  wrk_run "$nginx_url" "$track_lua" "$warmup"
  wrk_run "$nudge_url" "$track_lua" "$warmup"
fi

# Each endpoint's half-load run follows its full-load run, so that both see about the same
# amount of stored data (the store grows with every run; "stored_before" says how much).
nginx_run track "$track_lua" "$duration" 1;  track_nginx=$RUN; track_nginx_rps=$RPS
nudge_run track "$track_lua" "$duration" 1;  track_nudge=$RUN; track_nudge_rps=$RPS
track_applied_eps=$APPLIED_EPS
# Half load is half of what nudge sustains (applies), not of the rate it acknowledges a burst
# at: above the former, the backlog only grows.
half_run track-half "$track_lua" 1 "$track_applied_eps"; track_half=$RUN
half_run track-half-poisson "$track_lua" 1 "$track_applied_eps" pause=exp; track_half_poisson=$RUN
nginx_run batch "$batch_lua" "$duration" "$batch_events" events="$batch_events"
batch_nginx=$RUN; batch_nginx_rps=$RPS
nudge_run batch "$batch_lua" "$duration" "$batch_events" events="$batch_events"
batch_nudge=$RUN; batch_nudge_rps=$RPS; batch_applied_eps=$APPLIED_EPS
half_run batch-half "$batch_lua" "$batch_events" "$(calc "$batch_applied_eps / $batch_events" "%.1f")" \
  events="$batch_events"
batch_half=$RUN
half_run batch-half-poisson "$batch_lua" "$batch_events" \
  "$(calc "$batch_applied_eps / $batch_events" "%.1f")" events="$batch_events" pause=exp
batch_half_poisson=$RUN

ws_final=$(workspace)
db_bytes=$(du -sb "$data_dir" | cut -f1)

# ---------------------------------------------------------------- the store's own limit
# The same event rows committed by SQLite alone (bench/sqlite_events.cc): nudge's events
# table with its indexes, as its database declares them, and the table alone; as many rows
# already stored as nudge had when the run began, and as many rows per commit as nudge's
# group commits held on average. nudge idles meanwhile.
db_ro="file:$data_dir/nudge.db?mode=ro"
sqlite3 "$db_ro" ".schema events" >"$tmp/events_indexed.sql" || die "cannot read nudge's schema"
sqlite3 "$db_ro" "SELECT sql || ';' FROM sqlite_schema WHERE type = 'table' AND name = 'events'" \
  >"$tmp/events_table.sql"
sqlite3 "$db_ro" "SELECT body FROM events ORDER BY id DESC LIMIT 1" | tr -d '\n' >"$tmp/body.txt"
# reference LABEL SCHEMA RUN_JSON EVENTS_PER_REQUEST: sets REF (its JSON line).
reference() {
  local prefill group
  prefill=$(jnum "${3#*stored_before}" events)
  group=$(calc "$(jnum "$3" requests_per_commit) * $4" "%.0f")
  log "$1: SQLite alone, $group rows per commit after $prefill rows"
  REF=$("$ref_bin" "$tmp/ref.db" "$2" "$tmp/body.txt" "$prefill" "$group" 2000000 "$duration") ||
    die "sqlite_events failed ($1)"
}
reference track-rows "$tmp/events_indexed.sql" "$track_nudge" 1; ref_track=$REF
reference batch-rows "$tmp/events_indexed.sql" "$batch_nudge" "$batch_events"; ref_batch=$REF
reference batch-rows-table-only "$tmp/events_table.sql" "$batch_nudge" "$batch_events"
ref_batch_table=$REF
load_after=$(cut -d' ' -f1 /proc/loadavg)
floor_after=$(commit_floor_ms)

# ---------------------------------------------------------------- the JSON
track_ratio=$(calc "$track_nudge_rps / $track_nginx_rps" "%.3f")
batch_ratio=$(calc "$batch_nudge_rps / $batch_nginx_rps" "%.3f")
batch_eps=$(calc "$batch_nudge_rps * $batch_events" "%.0f")
p99_track_half=$(jnum "${track_half_poisson#*latency_ms}" p99)
p99_batch_half=$(jnum "${batch_half_poisson#*latency_ms}" p99)
p99_track_half_in_step=$(jnum "${track_half#*latency_ms}" p99)
p99_batch_half_in_step=$(jnum "${batch_half#*latency_ms}" p99)
met() { [ "$(calc "$1" "%d")" = 1 ] && echo true || echo false; }
failure_json=""
for f in "${failures[@]+"${failures[@]}"}"; do failure_json+="${failure_json:+,}\"$f\""; done
ok=$([ ${#failures[@]} -eq 0 ] && echo true || echo false)

cat <<EOF
{"benchmark":"ingest_http","ok":$ok,"failures":[$failure_json],
"setup":{"cores":$(nproc),"load_average_before":$load_before,"load_average_after":$load_after,
 "wrk":{"threads":$threads,"connections":$conns,"seconds_per_run":$duration},
 "nginx":"$(nginx -v 2>&1 | sed 's/.*: //') worker_processes auto, return 204",
 "nudge_http_threads":"${NUDGE_HTTP_THREADS:-default}","data_fs":"$data_fs",
 "sqlite_one_row_commit_ms":{"before":$floor_before,"after":$floor_after},
 "batch_events":$batch_events},
"track":{"nudge":$track_nudge,
 "nginx":$track_nginx,
 "nudge_vs_nginx_requests":$track_ratio},
"batch":{"nudge":$batch_nudge,
 "nginx":$batch_nginx,
 "nudge_vs_nginx_requests":$batch_ratio},
"half_load":{"track":$track_half,
 "batch":$batch_half,
 "track_poisson":$track_half_poisson,
 "batch_poisson":$batch_half_poisson},
"store_reference":{"what":"the same event rows committed by SQLite alone (bench/sqlite_events.cc), WAL, synchronous=FULL, as many rows per commit and already stored as in nudge's run",
 "track_group_with_indexes":$ref_track,
 "batch_group_with_indexes":$ref_batch,
 "batch_group_table_only":$ref_batch_table,
 "nudge_track_vs_store":$(calc "$track_nudge_rps / $(jnum "$ref_track" rows_per_s)" "%.3f"),
 "nudge_batch_vs_store":$(calc "$batch_eps / $(jnum "$ref_batch" rows_per_s)" "%.3f")},
"store_after":{"contacts":$(jnum "$ws_final" contacts),"events":$(jnum "$ws_final" events),"data_dir_bytes":$db_bytes},
"goals":{
 "track_at_least_half_of_nginx":{"value":$track_ratio,"target":0.5,"met":$(met "$track_ratio >= 0.5")},
 "batch_durable_events_per_s":{"value":$batch_eps,"target":250000,"met":$(met "$batch_eps >= 250000")},
 "batch_applied_events_per_s":{"value":$batch_applied_eps,"target":250000,"met":$(met "$batch_applied_eps >= 250000")},
 "track_applied_vs_nginx_requests":{"value":$(calc "$track_applied_eps / $track_nginx_rps" "%.3f"),"target":0.5,"met":$(met "$track_applied_eps >= 0.5 * $track_nginx_rps")},
 "track_p99_ms_at_half_load":{"value":$p99_track_half,"arrivals":"poisson","in_step":$p99_track_half_in_step,"target":5,"met":$(met "$p99_track_half <= 5")},
 "batch_p99_ms_at_half_load":{"value":$p99_batch_half,"arrivals":"poisson","in_step":$p99_batch_half_in_step,"target":5,"met":$(met "$p99_batch_half <= 5")}}}
EOF
[ "$ok" = true ]
