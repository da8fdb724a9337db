#!/usr/bin/env bash
# Segments benchmark: CONTACTS contacts x 20 segments (trait and behavioural): full rebuild
# time, the real background computation of a new segment, incremental events/s (end to end
# with SQLite, and the engine's own share per core), each beside the same segment written as an
# SQL query over the same SQLite data, timed in the same process. Prints one JSON object.
#
# Usage: bench/segments.sh [BUILD_DIR] [CONTACTS]        (defaults: ./build, 1000000)
#
# It builds nothing: configure BUILD_DIR with -DNUDGE_BUILD_BENCH=ON and build the
# segments_bench target first, e.g.
#   cmake -S . -B build -G Ninja -DNUDGE_BUILD_BENCH=ON && ninja -C build segments_bench
#
# What the program does, and every figure it prints, is described at the top of
# bench/segments_bench.cc. A full run at 1,000,000 contacts takes 7-8 minutes on 2 cores (about
# 3.5 of them generating the data and starting the engine for the first time) and about 10 GB
# of disk under BENCH_TMPDIR, removed afterwards; 50,000 contacts take about 30 s.
#
# Settings (environment): BENCH_EVENTS=200000 incremental messages per run (with and without
# the engine); BENCH_BATCH=500 messages per store write; BENCH_REBUILDS=3 full rebuilds (the
# fastest is reported); BENCH_SQL_RUNS=2 runs per SQL query (the fastest is reported);
# BENCH_TMPDIR=/var/tmp (a real disk, not tmpfs: commits fsync); BENCH_KEEP=1 keeps the
# data directory; BENCH_TIMEOUT=1800 seconds before the run is stopped (a failed benchmark).
#
# Exit status 0 and "ok": true, or a failed benchmark whose figures must not be used
# ("problems" says why: an SQL count that differs from the engine's, a restart that changed
# memberships, ...). Run it on an idle machine: a compiler in the background moves every
# figure; the JSON records the load average before and after.
set -uo pipefail

build=${1:-build}
[[ "$build" = /* ]] || build="$PWD/$build"
contacts=${2:-1000000}
bin="$build/bench/segments_bench"

bench=segments
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -x "$bin" ] || fail "no $bin (configure with -DNUDGE_BUILD_BENCH=ON and build segments_bench)"
[[ "$contacts" =~ ^[0-9]+$ ]] && [ "$contacts" -gt 0 ] || fail "CONTACTS must be a positive number"

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/nudge-bench-segments.XXXXXX") || fail "mktemp failed"
cleanup() {
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "segments: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

args=(--contacts "$contacts" --events "${BENCH_EVENTS:-200000}" --batch "${BENCH_BATCH:-500}"
      --rebuilds "${BENCH_REBUILDS:-3}" --sql-runs "${BENCH_SQL_RUNS:-2}" --tmpdir "$tmp")
[ "${BENCH_KEEP:-0}" = 1 ] && args+=(--keep)

out="$tmp/out.json"
timeout --kill-after=30 "${BENCH_TIMEOUT:-1800}" "$bin" "${args[@]}" >"$out"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  fail "stopped after BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800} s"
fi
[ -s "$out" ] || fail "segments_bench printed nothing (exit status $rc)"
cat "$out"
exit "$rc"
