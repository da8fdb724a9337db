#!/usr/bin/env bash
# The differential test: renders every case of tests/liquid/corpus/*.jsonl with nudge (text
# mode, BUILD_DIR/src/content/liquid_render) and with Shopify's ruby-liquid (ruby_render.rb),
# and fails when any output differs by a byte. Each mismatch is printed with its template,
# context and both outputs. Both run with TZ=UTC (nudge's dates are UTC).
#
# Usage: tests/liquid/run.sh BUILD_DIR
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || { echo "liquid: no build directory '$1'" >&2; exit 2; }
bin="$build/src/content/liquid_render"
if [ ! -x "$bin" ]; then
  echo "liquid: $bin is missing; build it first (ninja -C $1 liquid_render)" >&2
  exit 2
fi
if ! command -v ruby >/dev/null 2>&1 || ! ruby -e 'require "liquid"' 2>/dev/null; then
  echo "liquid: ruby and ruby-liquid are needed (make deps-test installs them)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=("$here"/corpus/*.jsonl)
TZ=UTC "$bin" "${corpus[@]}" >"$work/nudge.jsonl"
TZ=UTC ruby "$here/ruby_render.rb" "${corpus[@]}" >"$work/ruby.jsonl"
ruby "$here/compare.rb" "$here/corpus" "$work/nudge.jsonl" "$work/ruby.jsonl"
