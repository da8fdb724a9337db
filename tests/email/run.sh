#!/usr/bin/env bash
# End-to-end tests of the email transport (src/channel/email/) against real relays started by
# the tests: Postfix's smtp-sink, Node's smtp-server (relay.mjs) read back with mailparser, and
# DKIM checked by python3-dkim. Needs: postfix (smtp-sink), python3-dkim, node, openssl
# (make deps-test), and the Node modules of tests/node (installed here when missing).
# Usage: tests/email/run.sh BUILD_DIR [gtest flags...]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [--gtest_filter=...]" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || { echo "email e2e: no build directory '$1'" >&2; exit 2; }
shift
bin="$build/src/channel/email_e2e_test"
[ -x "$bin" ] || { echo "email e2e: $bin is missing; build it first" >&2; exit 2; }
[ -x /usr/sbin/smtp-sink ] || { echo "email e2e: /usr/sbin/smtp-sink is missing (apt-get install postfix)" >&2; exit 2; }
/usr/bin/python3 -c 'import dkim' 2>/dev/null || { echo "email e2e: python3-dkim is missing" >&2; exit 2; }
for tool in node npm openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "email e2e: $tool is not installed" >&2; exit 2; }
done

# The relay loads smtp-server and mailparser from tests/node/node_modules, installed exactly as
# locked (the same stamp tests/e2e.sh uses).
cd "$root/tests/node"
stamp=node_modules/.nudge-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d node_modules/smtp-server ]; then
  echo "email e2e: npm ci in tests/node"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

cd "$root"
timeout 600 "$bin" "$@"
