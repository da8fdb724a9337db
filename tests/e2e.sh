#!/usr/bin/env bash
# End-to-end tests: real `nudge serve` processes driven by the Segment and RudderStack Node
# SDKs, raw HTTP, and crash/shutdown durability checks (tests/node/), then the list-import
# end-to-end test (tests/import_e2e.py), the Liquid differential test against ruby-liquid
# (tests/liquid/run.sh) and the email transport against real relays (tests/email/run.sh).
# Usage: tests/e2e.sh BUILD_DIR      (make test runs it as `tests/e2e.sh build`)
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || { echo "e2e: no build directory '$1'" >&2; exit 2; }
bin="$build/nudge"
if [ ! -x "$bin" ]; then
  echo "e2e: $bin is missing; build it first (make build)" >&2
  exit 2
fi
for tool in node npm sqlite3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: $tool is not installed (make deps-test)" >&2; exit 2; }
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "e2e: Node.js 18 or later is needed, found $(node --version)" >&2
  exit 2
fi

# Install the SDKs exactly as locked, unless node_modules already matches the lock file.
cd "$root/tests/node"
stamp=node_modules/.nudge-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "e2e: npm ci in tests/node"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

status=0
start=$(date +%s)
# One test file at a time: the durability tests want the machine's cores to themselves.
# (--test-concurrency appeared in Node 20.10; older versions take the files one by one anyway
# when told to run them separately.)
files=("$root"/tests/node/*.test.mjs)
if node --test-concurrency=1 -e '' >/dev/null 2>&1; then
  NUDGE_BIN="$bin" timeout 1200 node --test --test-concurrency=1 "${files[@]}" || status=1
else
  for f in "${files[@]}"; do
    NUDGE_BIN="$bin" timeout 600 node --test "$f" || status=1
  done
fi
echo "e2e: node tests took $(($(date +%s) - start)) s"

# The Liquid differential test against ruby-liquid, and the email transport against real relays.
"$root/tests/liquid/run.sh" "$build" || status=1
"$root/tests/email/run.sh" "$build" || status=1

if [ -f "$root/tests/import_e2e.py" ]; then
  cd "$root"
  python3 tests/import_e2e.py "$build" || status=1
fi

if [ "$status" -ne 0 ]; then
  echo "e2e: FAILED" >&2
else
  echo "e2e: all passed"
fi
exit "$status"
