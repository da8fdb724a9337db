#!/usr/bin/env bash
# Liquid renders/s and parses/s: nudge beside LiquidJS (npm `liquidjs`, the reference) and
# ruby-liquid, on the corpus of the differential test (tests/liquid/corpus/*.jsonl), all in one
# run. Each engine parses every case round after round for BENCH_SECONDS, then renders the
# pre-parsed cases with pre-built contexts for BENCH_SECONDS, on one thread. The first render of
# every case is compared: nudge must equal ruby-liquid everywhere (the corpus is the
# differential test's); LiquidJS differs from Ruby on some cases, which are counted and named.
# Prints one JSON object; exits 1 when nudge and ruby-liquid disagree.
#
# Suites: "corpus" (every case), "realistic" (tests/liquid/corpus/realistic.jsonl only: the
# snippets of marketing emails, with loops, conditions and filters) and "emails"
# (bench/liquid/emails.jsonl: three whole HTML emails of 2-3 KB each, an abandoned cart, a
# weekly digest and a welcome, written with Shopify's filters only). Each suite records the
# load average before and after it.
#
# Usage: bench/liquid/run.sh [BUILD_DIR]   (default ./build, configured with
#                                           -DNUDGE_BUILD_BENCH=ON; BENCH_SECONDS=2 per
#                                           measurement)
set -euo pipefail

if [ $# -gt 1 ]; then
  echo "usage: $0 [BUILD_DIR]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "liquid bench: no build directory '${1:-build}'" >&2; exit 2; }
bin="$build/src/content/liquid_bench"
if [ ! -x "$bin" ]; then
  echo "liquid bench: $bin is missing (configure with -DNUDGE_BUILD_BENCH=ON, build liquid_bench)" >&2
  exit 2
fi
for tool in node npm ruby; do
  command -v "$tool" >/dev/null 2>&1 || { echo "liquid bench: $tool is not installed" >&2; exit 2; }
done
seconds=${BENCH_SECONDS:-2}

# LiquidJS exactly as locked.
cd "$here"
stamp=node_modules/.nudge-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "liquid bench: npm ci in bench/liquid" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TZ=UTC
run_suite() {  # name files...
  local name=$1
  shift
  cut -d' ' -f1-3 /proc/loadavg >"$work/$name-load-before"
  echo "liquid bench: $name: nudge" >&2
  "$bin" "$seconds" "$work/$name-nudge.jsonl" "$@" >"$work/$name-nudge.json"
  echo "liquid bench: $name: liquidjs" >&2
  node "$here/bench.mjs" "$seconds" "$work/$name-liquidjs.jsonl" "$@" >"$work/$name-liquidjs.json"
  echo "liquid bench: $name: ruby-liquid" >&2
  ruby "$here/bench.rb" "$seconds" "$work/$name-ruby.jsonl" "$@" >"$work/$name-ruby.json"
  cut -d' ' -f1-3 /proc/loadavg >"$work/$name-load-after"
}
run_suite corpus "$root"/tests/liquid/corpus/*.jsonl
run_suite realistic "$root"/tests/liquid/corpus/realistic.jsonl
run_suite emails "$here/emails.jsonl"

ruby -rjson -e '
  work = ARGV[0]
  ok = true
  load_outputs = ->(f) { File.readlines(f).map { |l| JSON.parse(l) }.to_h { |r| [r["name"], r] } }
  result = {}
  %w[corpus realistic emails].each do |suite|
    e = %w[nudge liquidjs ruby].to_h { |n| [n, JSON.parse(File.read("#{work}/#{suite}-#{n}.json"))] }
    o = %w[nudge liquidjs ruby].to_h { |n| [n, load_outputs.("#{work}/#{suite}-#{n}.jsonl")] }
    same = ->(other) { o["nudge"].count { |k, v| o[other][k] && v["output"] && o[other][k]["output"] == v["output"] } }
    ruby_diff = o["nudge"].keys.reject { |k| o["ruby"][k] && o["nudge"][k]["output"] && o["ruby"][k]["output"] == o["nudge"][k]["output"] }
    js_diff = o["nudge"].keys.reject { |k| o["liquidjs"][k] && o["nudge"][k]["output"] && o["liquidjs"][k]["output"] == o["nudge"][k]["output"] }
    ok &&= ruby_diff.empty?
    js = e["liquidjs"]
    result[suite] = {
      "cases" => e["nudge"]["cases"],
      "nudge" => e["nudge"], "liquidjs" => js, "ruby" => e["ruby"],
      "renders_vs_liquidjs" => (e["nudge"]["renders_per_s"].to_f / js["renders_per_s"]).round(1),
      "parses_vs_liquidjs" => (e["nudge"]["parses_per_s"].to_f / js["parses_per_s"]).round(1),
      "renders_vs_ruby" => (e["nudge"]["renders_per_s"].to_f / e["ruby"]["renders_per_s"]).round(1),
      "same_output_as_ruby" => same.("ruby"),
      "same_output_as_liquidjs" => same.("liquidjs"),
      "differs_from_ruby" => ruby_diff,
      "differs_from_liquidjs" => js_diff,
      "load_average_before_after" => %w[before after].map { |w| File.read("#{work}/#{suite}-load-#{w}").strip },
    }
  end
  result["seconds_per_measurement"] = ARGV[1].to_f
  result["ok"] = ok
  puts JSON.pretty_generate(result)
  exit(ok ? 0 : 1)
' "$work" "$seconds"
