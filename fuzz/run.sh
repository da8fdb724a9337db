#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (AddressSanitizer + UndefinedBehaviorSanitizer)
# outside the CMake build, then runs each for SECONDS seconds on a working copy of its seed
# corpus in BUILD_DIR (the committed corpus in fuzz/corpus/ is only read). Fails on any crash,
# sanitizer report, leak or timeout; the input that caused it is left in BUILD_DIR/artifacts/.
#
# Usage: fuzz/run.sh BUILD_DIR SECONDS      (make fuzz runs it as fuzz/run.sh build-fuzz 20)
# Reproduce a failure: BUILD_DIR/<target> BUILD_DIR/artifacts/<target>-crash-...
set -euo pipefail

if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
seconds=$2
cxx=${FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz: $cxx is not installed (make deps-test installs clang-14 and libclang-rt-14-dev)" >&2
  exit 2
fi

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
  -fno-sanitize-recover=all -I "$root/src" -Wno-unused-command-line-argument)

# The library sources the targets need, compiled once with coverage instrumentation.
sources=(core/status.cc core/clock.cc core/time.cc core/crypto.cc core/json.cc core/csv.cc core/url.cc
  ingest/parser.cc ingest/json_error.cc ingest/gzip.cc profile/list_hygiene.cc
  channel/feedback/feedback.cc channel/feedback/mime.cc channel/feedback/report.cc
  channel/feedback/webhooks.cc channel/feedback/internal/text.cc
  content/liquid.cc content/internal/parser.cc content/internal/render.cc
  content/internal/filters.cc content/internal/ruby.cc content/internal/time_format.cc
  content/internal/unicode_case.cc)
declare -A target_sources=(
  [event_parser_fuzz]="core/status.cc core/clock.cc core/time.cc core/crypto.cc core/json.cc ingest/parser.cc ingest/json_error.cc ingest/gzip.cc"
  [csv_fuzz]="core/status.cc core/json.cc core/csv.cc profile/list_hygiene.cc"
  [feedback_fuzz]="core/status.cc core/json.cc channel/feedback/feedback.cc channel/feedback/mime.cc channel/feedback/report.cc channel/feedback/webhooks.cc channel/feedback/internal/text.cc"
  [liquid_fuzz]="core/status.cc core/clock.cc core/json.cc core/url.cc content/liquid.cc content/internal/parser.cc content/internal/render.cc content/internal/filters.cc content/internal/ruby.cc content/internal/time_format.cc content/internal/unicode_case.cc"
)
declare -A target_libs=(
  [event_parser_fuzz]="-lsimdjson -lz -lcrypto"
  [csv_fuzz]=""
  [feedback_fuzz]=""
  [liquid_fuzz]=""
)
targets=(event_parser_fuzz csv_fuzz feedback_fuzz liquid_fuzz)

# Rebuild everything when any input changed (sources, headers, this script, the compiler).
mkdir -p "$out/obj"
stamp=$(
  cd "$root"
  {
    cat fuzz/run.sh fuzz/*.cc
    for s in "${sources[@]}"; do cat "src/$s"; done
    cat src/core/*.h src/ingest/*.h src/profile/list_hygiene.h
    cat src/content/*.h src/content/internal/*.h
    cat src/channel/feedback/*.h src/channel/feedback/internal/*.h
    "$cxx" --version
  } | sha256sum | cut -d' ' -f1
)
if [ ! -f "$out/stamp" ] || [ "$(cat "$out/stamp")" != "$stamp" ] ||
  ! ls "$out/event_parser_fuzz" "$out/csv_fuzz" "$out/feedback_fuzz" "$out/liquid_fuzz" >/dev/null 2>&1; then
  echo "fuzz: building with $cxx into $out"
  rm -f "$out/stamp"
  jobs_max=$(nproc)
  pids=()
  compile() {  # source object
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$1" -o "$2"
  }
  for s in "${sources[@]}"; do
    compile "$root/src/$s" "$out/obj/${s//\//_}.o" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  done
  for t in "${targets[@]}"; do
    compile "$root/fuzz/$t.cc" "$out/obj/$t.o" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  if [ "$failed" -ne 0 ]; then
    echo "fuzz: compilation failed" >&2
    exit 1
  fi
  for t in "${targets[@]}"; do
    objs=("$out/obj/$t.o")
    for s in ${target_sources[$t]}; do objs+=("$out/obj/${s//\//_}.o"); done
    # shellcheck disable=SC2086
    "$cxx" "${flags[@]}" -fsanitize=fuzzer "${objs[@]}" ${target_libs[$t]} -o "$out/$t"
  done
  echo "$stamp" >"$out/stamp"
fi

status=0
mkdir -p "$out/artifacts"
for t in "${targets[@]}"; do
  name=${t%_fuzz}
  corpus="$out/corpus/$name"
  mkdir -p "$corpus"
  cp "$root/fuzz/corpus/$name"/* "$corpus"/
  log="$out/$t.log"
  echo "fuzz: $t for ${seconds}s ($(find "$corpus" -type f | wc -l) inputs in the corpus)"
  if "$out/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$corpus" >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' ' | sed 's/^/  /'
    echo
  else
    status=1
    echo "fuzz: $t FAILED; the end of $log:" >&2
    tail -40 "$log" >&2
  fi
done
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED" >&2
  exit 1
fi
echo "fuzz: all passed"
