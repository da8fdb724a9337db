#!/usr/bin/env bash
# Runs the benchmarks in bench/ against BUILD_DIR and prints one JSON object:
#   {"ingest_http": <bench/ingest_http.sh>, "memory": <bench/memory.sh>,
#    "segments": <bench/segments.sh>, "journeys": <bench/journeys.sh>,
#    "liquid": <bench/liquid/run.sh>, "email": <bench/email/run.sh>,
#    "images": <bench/images/run.sh>, "delivery": <bench/delivery.sh>,
#    "load_average": {"start", "end"}, "failed": [names], "ok": ...}
# Progress goes to stderr. Exits non-zero if any benchmark failed (lost events, errors, a run
# cut short, an output that is not JSON); their JSON is printed all the same. `make bench`
# calls this.
#
# Usage: bench/run.sh BUILD_DIR
#   BENCH_ONLY="journeys delivery"   run only these (names as above; default: all of them)
#   BENCH_CONTACTS=1000000           contacts for memory.sh, segments.sh and journeys.sh
#   BENCH_BUILD_JOBS=2               jobs when building missing benchmark programs
#   each script's own BENCH_* settings pass through (see their headers).
# The benchmark programs (segments_bench, journeys_bench, liquid_bench, email_bench,
# image_bench) are built when missing: BUILD_DIR is configured with -DNUDGE_BUILD_BENCH=ON.
# All of them at a million contacts take about 30 minutes on 2 cores.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:?usage: bench/run.sh BUILD_DIR}
[[ "$build" = /* ]] || build="$PWD/$build"
[ -x "$build/nudge" ] || { echo "bench/run.sh: no nudge binary in $build (build it first)" >&2; exit 1; }

all=(ingest_http memory segments journeys liquid email images delivery)
read -r -a only <<<"${BENCH_ONLY:-${all[*]}}"
for name in "${only[@]}"; do
  [[ " ${all[*]} " == *" $name "* ]] || { echo "bench/run.sh: unknown benchmark '$name' (known: ${all[*]})" >&2; exit 2; }
done
selected() { [[ " ${only[*]} " == *" $1 "* ]]; }
contacts=${BENCH_CONTACTS:-1000000}

# The programs the selected benchmarks need, built when missing.
declare -A program=(
  [segments]="bench/segments_bench:segments_bench"
  [journeys]="src/journey/journeys_bench:journeys_bench"
  [liquid]="src/content/liquid_bench:liquid_bench"
  [email]="src/channel/email_bench:email_bench"
  [images]="src/content/image/image_bench:image_bench"
  [delivery]="src/channel/email_bench:email_bench"
)
targets=()
for name in "${only[@]}"; do
  spec=${program[$name]:-}
  [ -n "$spec" ] || continue
  [ -x "$build/${spec%%:*}" ] || targets+=("${spec##*:}")
done
if [ ${#targets[@]} -gt 0 ]; then
  echo "bench/run.sh: building ${targets[*]} in $build" >&2
  cmake -S "$root" -B "$build" -DNUDGE_BUILD_BENCH=ON >/dev/null &&
    cmake --build "$build" -j "${BENCH_BUILD_JOBS:-2}" --target $(printf '%s\n' "${targets[@]}" | sort -u) >&2 ||
    { echo "bench/run.sh: building the benchmark programs failed" >&2; exit 1; }
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
failed=()
run() {  # name command...
  local name=$1
  shift
  selected "$name" || return 0
  echo "bench/run.sh: $name" >&2
  "$@" >"$out/$name.json" || failed+=("$name")
}
run ingest_http "$here/ingest_http.sh" "$build"
run memory "$here/memory.sh" "$build" "$contacts"
run segments "$here/segments.sh" "$build" "$contacts"
run journeys "$here/journeys.sh" "$build" "$contacts"
run liquid "$here/liquid/run.sh" "$build"
run email "$here/email/run.sh" "$build"
run images "$here/images/run.sh" "$build"
run delivery "$here/delivery.sh" "$build"

# One object: each benchmark's JSON as printed, or an error when it printed none.
python3 - "$out" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "${failed[*]:-}" "${only[@]}" <<'EOF'
import json, os, sys
out, load_start, load_end, failed = sys.argv[1:5]
failed = failed.split()
result = {}
for name in sys.argv[5:]:
    path = os.path.join(out, name + ".json")
    text = open(path).read() if os.path.exists(path) else ""
    try:
        result[name] = json.loads(text)
    except ValueError:
        result[name] = {"ok": False, "error": "no JSON output" if not text.strip() else "output is not JSON",
                        "output_head": text[:500]}
        if name not in failed:
            failed.append(name)
result["load_average"] = {"start": load_start, "end": load_end}
result["failed"] = failed
result["ok"] = not failed
print(json.dumps(result, indent=1, ensure_ascii=False))
sys.exit(0 if not failed else 1)
EOF
