#!/usr/bin/env bash
# Email transport benchmark: personalized messages into Postfix's smtp-sink, sent by
#   1. smtp-source (Postfix's own load generator: the sink's limit, no MIME building),
#   2. nodemailer's pooled transport (the reference: it builds the MIME too),
#   3. nudge's EmailSender (email_bench: BuildMessage per recipient + Submit),
# each with 8 connections, then nudge at a steady 2000 messages/s for the latency a journey
# sees when the sender is not saturated, then both again with DKIM signing.
# Prints one JSON object ("ok": every message of every sender accepted); each figure carries
# the load average read just before it (load_average_before). The machine is shared: compare
# figures of the same run only.
#
# Usage: bench/email/run.sh BUILD_DIR          (BUILD_DIR configured with -DNUDGE_BUILD_BENCH=ON)
# Environment: COUNT (100000), NODEMAILER_COUNT (= COUNT), DKIM_COUNT (20000),
#              NODEMAILER_DKIM_COUNT (5000), POOL (8), WINDOW (64), PACED_RATE (2000)
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
bench="$build/src/channel/email_bench"
if [ ! -x "$bench" ]; then
  echo "email bench: $bench is missing; configure with -DNUDGE_BUILD_BENCH=ON and build email_bench" >&2
  exit 2
fi
[ -x /usr/sbin/smtp-sink ] || { echo "email bench: smtp-sink is missing (apt-get install postfix)" >&2; exit 2; }
[ -d "$root/tests/node/node_modules/nodemailer" ] || (cd "$root/tests/node" && npm ci --no-audit --no-fund --loglevel=error)

count=${COUNT:-100000}
nm_count=${NODEMAILER_COUNT:-$count}
dkim_count=${DKIM_COUNT:-20000}
nm_dkim_count=${NODEMAILER_DKIM_COUNT:-5000}
pool=${POOL:-8}
window=${WINDOW:-64}
paced_rate=${PACED_RATE:-2000}

work=$(mktemp -d /tmp/nudge-email-bench-XXXXXX)
sink_pid=""
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user_flag=()
[ "$(id -u)" -eq 0 ] && user_flag=(-u root)
/usr/sbin/smtp-sink "${user_flag[@]}" -h sink.test 127.0.0.1:"$port" 1000 >"$work/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.05
done

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(loadavg)

echo "email bench: smtp-source, $count messages" >&2
load_source=$(loadavg)
t0=$(date +%s.%N)
/usr/sbin/smtp-source -d -s "$pool" -m "$count" -l 3000 -f bounce@acme.test -t user@example.test \
  -M bench.acme.test 127.0.0.1:"$port" >"$work/source.log" 2>&1
t1=$(date +%s.%N)
source_json=$(python3 -c "import json,sys; s=float(sys.argv[2])-float(sys.argv[1]); print(json.dumps({'label':'smtp-source','messages':int(sys.argv[3]),'seconds':round(s,3),'messages_per_second':round(int(sys.argv[3])/s)}))" "$t0" "$t1" "$count")

# Each figure carries the load average (1, 5, 15 min) read just before it was measured.
with_load() {  # JSON, load average
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); d['load_average_before']=sys.argv[2]; print(json.dumps(d))" "$1" "$2"
}
source_json=$(with_load "$source_json" "$load_source")

echo "email bench: nodemailer, $nm_count messages" >&2
l=$(loadavg)
nm_json=$(node "$root/bench/email/nodemailer_bench.mjs" --port "$port" --count "$nm_count" --pool "$pool" --window "$window")
nm_json=$(with_load "$nm_json" "$l")
echo "email bench: nudge, $count messages" >&2
l=$(loadavg)
nudge_json=$("$bench" --port "$port" --count "$count" --pool "$pool" --window "$window")
nudge_json=$(with_load "$nudge_json" "$l")
echo "email bench: nudge at $paced_rate messages/s" >&2
l=$(loadavg)
paced_json=$("$bench" --port "$port" --count $((paced_rate * 10)) --pool "$pool" --window "$window" --rate "$paced_rate" --label nudge-paced)
paced_json=$(with_load "$paced_json" "$l")

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/dkim.pem" 2>/dev/null
echo "email bench: DKIM-signed, nudge $dkim_count and nodemailer $nm_dkim_count messages" >&2
l=$(loadavg)
nudge_dkim_json=$("$bench" --port "$port" --count "$dkim_count" --pool "$pool" --window "$window" --dkim "$work/dkim.pem" --producers "$(nproc)" --label nudge-dkim)
nudge_dkim_json=$(with_load "$nudge_dkim_json" "$l")
l=$(loadavg)
nm_dkim_json=$(node "$root/bench/email/nodemailer_bench.mjs" --port "$port" --count "$nm_dkim_count" --pool "$pool" --window "$window" --dkim "$work/dkim.pem" --label nodemailer-dkim)
nm_dkim_json=$(with_load "$nm_dkim_json" "$l")

python3 - "$source_json" "$nm_json" "$nudge_json" "$paced_json" "$nudge_dkim_json" "$nm_dkim_json" "$load_start" "$(loadavg)" <<'EOF'
import json, os, sys
source, nm, nudge, paced, nudge_dkim, nm_dkim = (json.loads(a) for a in sys.argv[1:7])
load_start, load_end = sys.argv[7:9]
ratio = lambda a, b: round(a["messages_per_second"] / b["messages_per_second"], 2)
# Every message of every sender answered 250 (the senders exit non-zero otherwise, too).
ok = all(r.get("failed", 0) == 0 and r.get("sent") == r["messages"]
         for r in (nm, nudge, paced, nudge_dkim, nm_dkim))
print(json.dumps({
    "benchmark": "email: personalized messages into smtp-sink",
    "cores": os.cpu_count(),
    "load_average_start": load_start,
    "smtp_source": source,
    "nodemailer": nm,
    "nudge": nudge,
    "nudge_paced": paced,
    "dkim": {"nudge": nudge_dkim, "nodemailer": nm_dkim,
             "nudge_vs_nodemailer": ratio(nudge_dkim, nm_dkim)},
    "nudge_vs_nodemailer": ratio(nudge, nm),
    "nudge_vs_smtp_source": ratio(nudge, source),
    "aims": {
        "throughput_at_least_5x_nodemailer": ratio(nudge, nm) >= 5,
        "peak_rss_at_most_64mb": nudge["peak_rss_mb"] <= 64,
        "p99_at_most_25ms_paced": paced["latency_ms"]["p99"] <= 25,
        "p99_at_most_25ms_saturated": nudge["latency_ms"]["p99"] <= 25,
    },
    "load_average_end": load_end,
    "ok": ok,
}, indent=2))
sys.exit(0 if ok else 1)
EOF
