#!/usr/bin/env bash
# Journeys benchmark: CONTACTS contacts across 10 journeys with waits.
#   - event → outbox latency p50/p90/p99/max at 10k events/s (real clock, one store write per
#     Segment message as /v1/track does; the outbox row commits with the event), and again
#     below saturation (2k events/s);
#   - pending timers: bytes per timer in memory (heap and RSS growth of journey::Engine::Load)
#     and on disk (journey_instances and its indexes, SQLite dbstat); fires/s on a virtual
#     clock (each fire writes the instance, the step log and an outbox message); p99 lateness
#     of 100k timers on the real clock;
#   - beside the raw SQLite write rate of the same rows (plain prepared INSERTs, WAL,
#     synchronous=FULL) and the time of a one-row durable commit, measured in the same run.
# Prints one JSON object; the aims (p99 ≤ 5 ms, ≥ 100k fires/s, ≤ 128 B per pending timer) are
# in "goals", each with value/target/met.
#
# Usage: bench/journeys.sh [BUILD_DIR] [CONTACTS]        (defaults: ./build, 1000000)
#
# It builds nothing: configure BUILD_DIR with -DNUDGE_BUILD_BENCH=ON and build journeys_bench:
#   cmake -S . -B build -G Ninja -DNUDGE_BUILD_BENCH=ON && ninja -C build journeys_bench
#
# What the program does, and every figure it prints, is described at the top of
# src/journey/journeys_bench.cc. A full run at 1,000,000 contacts takes 8–10 minutes on 2
# cores (most of it the paced ingest, which the engine cannot keep at 10k/s there, and the
# million fires) and about 6 GB of disk under BENCH_TMPDIR (removed afterwards); 50,000
# contacts take about a minute.
#
# Settings (environment): BENCH_RATE=10000 events/s offered in part 1; BENCH_TICK_MS=1 (each
# tick submits RATE×TICK/1000 writes); BENCH_LOW_RATE=2000 and BENCH_LOW_EVENTS (default
# min(20000, CONTACTS)) for the latency below saturation; BENCH_PROBES (default min(100000,
# CONTACTS/10)), BENCH_PROBE_RATE=20000, BENCH_PROBE_WAIT_S=45 for the lateness of real-clock
# timers; BENCH_FIRE_STEP_S=60 (virtual seconds the clock moves past each due timer);
# BENCH_TMPDIR=/var/tmp (a real disk, not tmpfs: commits fsync); BENCH_KEEP=1 keeps the data
# directory; BENCH_TIMEOUT=1800 seconds before the run is stopped (a failed benchmark).
#
# Exit status 0 and "ok": true, or a failed benchmark whose figures must not be used
# ("problems" says why: an outbox count that differs from the events sent, fires that did not
# write their message, ...). Unmet aims do not fail the run: "goals" reports them. Run it on an
# idle machine: a compiler in the background moves every figure; the JSON records the load
# average before and after, and the disk's one-row commit time before and after.
set -uo pipefail

build=${1:-build}
[[ "$build" = /* ]] || build="$PWD/$build"
contacts=${2:-1000000}
bin="$build/src/journey/journeys_bench"

bench=journeys
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -x "$bin" ] || fail "no $bin (configure with -DNUDGE_BUILD_BENCH=ON and build journeys_bench)"
[[ "$contacts" =~ ^[0-9]+$ ]] && [ "$contacts" -gt 0 ] || fail "CONTACTS must be a positive number"

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/nudge-bench-journeys-run.XXXXXX") || fail "mktemp failed"
cleanup() {
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "journeys: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

args=(--contacts "$contacts" --rate "${BENCH_RATE:-10000}" --tick-ms "${BENCH_TICK_MS:-1}"
      --low-rate "${BENCH_LOW_RATE:-2000}" --probe-rate "${BENCH_PROBE_RATE:-20000}"
      --probe-wait-s "${BENCH_PROBE_WAIT_S:-45}" --fire-step-s "${BENCH_FIRE_STEP_S:-60}"
      --tmpdir "$tmp")
[ -n "${BENCH_LOW_EVENTS:-}" ] && args+=(--low-events "$BENCH_LOW_EVENTS")
[ -n "${BENCH_PROBES:-}" ] && args+=(--probes "$BENCH_PROBES")
[ "${BENCH_KEEP:-0}" = 1 ] && args+=(--keep)

out="$tmp/out.json"
timeout --kill-after=30 "${BENCH_TIMEOUT:-1800}" "$bin" "${args[@]}" >"$out"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  fail "stopped after BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800} s"
fi
[ -s "$out" ] || fail "journeys_bench printed nothing (exit status $rc)"
cat "$out"
exit "$rc"
