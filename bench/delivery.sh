#!/usr/bin/env bash
# Delivery benchmark: the whole pipeline of one `nudge serve`, from a tracked event to an email
# accepted by an SMTP relay, beside nodemailer's pool sending the same number of messages into
# the same relay. bench/delivery/delivery.mjs does the work (its header describes every step):
#   - the relay: bench/delivery/sink.mjs, Node's smtp-server on 127.0.0.1 that notes when each
#     message arrives and its Message-ID; nudge.yaml names it as the only relay (tls: none);
#   - a template and a journey (trigger "Bench Signal", entry every_time, one send step) PUT
#     through the admin API, COUNT contacts with an email address identified through /v1/batch;
#   - throughput: COUNT track events through /v1/batch; messages/s from the first request until
#     every contact's message reached the sink, then every message checked `sent` through
#     GET /api/v1/messages; nudge's peak resident memory (VmHWM, reset before the phase) and its
#     CPU per thread;
#   - latency: BENCH_DELIVERY_LATENCY_COUNT events on /v1/track, one per request, paced at
#     BENCH_DELIVERY_LATENCY_RATE/s; per event the HTTP 200 → the sink reading its message;
#   - references, nudge stopped: nodemailer's pooled transport (bench/email/nodemailer_bench.mjs)
#     and nudge's EmailSender alone (email_bench, when built), COUNT messages each.
# Prints one JSON object; progress on stderr. Exit status 1 (and "ok": false) when a check
# failed: a message lost, sent twice or not `sent`, a request refused, a pipeline that stopped
# making progress, nudge not exiting cleanly; "problems" says which and "nudge_log_tail" shows
# the server's last log lines.
#
# Usage: bench/delivery.sh [BUILD_DIR] [COUNT]        (defaults: ./build, 20000)
#   BUILD_DIR holds nudge (and src/channel/email_bench when configured -DNUDGE_BUILD_BENCH=ON).
# Settings (environment):
#   BENCH_DELIVERY_LATENCY_COUNT=2000   events of the latency phase (at most COUNT)
#   BENCH_DELIVERY_LATENCY_RATE=200     their pace, events/s
#   BENCH_DELIVERY_BATCH=100            events per /v1/batch request in the throughput phase
#   BENCH_DELIVERY_CONCURRENCY=4        /v1/batch requests at a time
#   BENCH_DELIVERY_POOL=8               SMTP connections, nudge and nodemailer alike
#   BENCH_TMPDIR=/var/tmp               where the data directory goes (a real disk: commits
#                                       fsync); BENCH_KEEP=1 keeps it, with nudge.log
#   BENCH_TIMEOUT=600                   seconds for the whole run; a wait also ends after 60 s
#                                       without progress
# Needs node and npm: the sink's modules are installed into bench/delivery/node_modules exactly
# as bench/delivery/package-lock.json locks them. About 45 s at the defaults.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build}
[[ "$build" = /* ]] || build="$PWD/$build"
count=${2:-20000}

bench=delivery
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -x "$build/nudge" ] || fail "no nudge binary in $build (build the nudge target first)"
[[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -gt 0 ] || fail "COUNT must be a positive number"
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# The sink's modules exactly as locked.
stamp="$here/delivery/node_modules/.nudge-lock.sha256"
want=$(sha256sum "$here/delivery/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "delivery: npm ci in bench/delivery" >&2
  (cd "$here/delivery" && npm ci --no-audit --no-fund --loglevel=error >&2) || fail "npm ci failed in bench/delivery"
  echo "$want" >"$stamp"
fi

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/nudge-bench-delivery.XXXXXX") || fail "mktemp failed"
cleanup() {
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "delivery: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

timeout_s=${BENCH_TIMEOUT:-600}
args=(--nudge "$build/nudge" --tmpdir "$tmp" --count "$count"
      --latency-count "${BENCH_DELIVERY_LATENCY_COUNT:-2000}" --latency-rate "${BENCH_DELIVERY_LATENCY_RATE:-200}"
      --batch "${BENCH_DELIVERY_BATCH:-100}" --concurrency "${BENCH_DELIVERY_CONCURRENCY:-4}"
      --pool "${BENCH_DELIVERY_POOL:-8}" --timeout "$timeout_s")
[ -x "$build/src/channel/email_bench" ] && args+=(--email-bench "$build/src/channel/email_bench")

# The driver stops itself at BENCH_TIMEOUT; the outer timeout is the backstop.
timeout --kill-after=10 $((timeout_s + 90)) node "$here/delivery/delivery.mjs" "${args[@]}" >"$tmp/out.json"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  fail "stopped after BENCH_TIMEOUT=$timeout_s s (+90)"
fi
[ -s "$tmp/out.json" ] || fail "delivery.mjs printed nothing (exit status $rc)"
cat "$tmp/out.json"
exit "$rc"
