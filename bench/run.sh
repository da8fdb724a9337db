#!/usr/bin/env bash
# Runs every benchmark in bench/ against BUILD_DIR's nudge and prints one JSON object:
#   {"ingest_http": <bench/ingest_http.sh>, "memory": <bench/memory.sh>, "ok": ...}
# Progress goes to stderr. Exits non-zero if any benchmark failed (lost events, errors,
# a run cut short); their JSON is printed all the same. `make bench` calls this.
#
# Usage: bench/run.sh BUILD_DIR          (BENCH_CONTACTS=1000000: contacts for memory.sh;
#                                          each script's own BENCH_* settings pass through)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: bench/run.sh BUILD_DIR}
[[ "$build" = /* ]] || build="$PWD/$build"
[ -x "$build/nudge" ] || { echo "bench/run.sh: no nudge binary in $build (build it first)" >&2; exit 1; }

ok=true
http_json=$("$here/ingest_http.sh" "$build") || ok=false
memory_json=$("$here/memory.sh" "$build" "${BENCH_CONTACTS:-1000000}") || ok=false
[ -n "$http_json" ] || http_json='{"ok":false,"error":"no output"}'
[ -n "$memory_json" ] || memory_json='{"ok":false,"error":"no output"}'

printf '{"ingest_http":%s,\n"memory":%s,\n"ok":%s}\n' "$http_json" "$memory_json" "$ok"
[ "$ok" = true ]
