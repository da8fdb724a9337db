#!/usr/bin/env bash
# `make run`: starts `nudge serve` on SQLite under DATA with the demo workspace loaded.
# Usage: scripts/run.sh BINARY DATA LISTEN
# The demo uses fixed keys (override NUDGE_WRITE_KEY / NUDGE_ADMIN_KEY to choose your own).
set -euo pipefail
bin=$1 data=$2 listen=$3
cd "$(dirname "$0")/.."
export NUDGE_WRITE_KEY=${NUDGE_WRITE_KEY:-demo_write_key}
export NUDGE_ADMIN_KEY=${NUDGE_ADMIN_KEY:-demo_admin_key}
url="http://$listen"

"$bin" serve --data "$data" --listen "$listen" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM

for _ in $(seq 1 100); do
  curl -fs "$url/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done

# Segments, scoring and stages are applied on every start (unchanged files change nothing);
# the demo's contacts and events are loaded once.
"$bin" apply -f examples/demo --server "$url" --key "$NUDGE_ADMIN_KEY" || true
if [ ! -f "$data/.demo-loaded" ]; then
  echo "Loading the demo contacts and events (examples/demo) ..."
  "$bin" import contacts examples/demo/contacts.csv --server "$url" --key "$NUDGE_ADMIN_KEY" \
    --source demo --tag demo --rejects "$data/demo-rejects.csv" \
    --flagged "$data/demo-flagged.csv" || true
  curl -fs -u "$NUDGE_WRITE_KEY:" -H 'Content-Type: application/json' \
    --data-binary @examples/demo/events.json "$url/v1/batch" >/dev/null && touch "$data/.demo-loaded"
fi

cat <<MSG

nudge is running at $url (data in $data). Try:
  curl -u $NUDGE_WRITE_KEY: -d '{"userId":"ann","event":"Demo Booked"}' $url/v1/track
  curl -H "Authorization: Bearer $NUDGE_ADMIN_KEY" $url/api/v1/contacts/ann
  curl -H "Authorization: Bearer $NUDGE_ADMIN_KEY" $url/api/v1/segments
Stop with Ctrl-C.
MSG
wait $pid
