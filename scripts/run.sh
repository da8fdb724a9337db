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
# Without a configuration naming an email relay, the demo holds delivery: journeys' messages
# stay `queued` and visible (GET /api/v1/messages). examples/nudge.yaml shows a configuration
# that sends: NUDGE_CONFIG=examples/nudge.yaml make run
if [ -z "${NUDGE_CONFIG:-}" ]; then export NUDGE_DELIVERY_HOLD=${NUDGE_DELIVERY_HOLD:-1}; fi

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
  curl -H "Authorization: Bearer $NUDGE_ADMIN_KEY" -d '{"user_id":"ann"}' $url/api/v1/templates/welcome/preview
  curl -H "Authorization: Bearer $NUDGE_ADMIN_KEY" "$url/api/v1/messages?journey=welcome"
MSG
if [ "${NUDGE_DELIVERY_HOLD:-0}" = 1 ]; then
  cat <<MSG
Delivery is on hold (no email relay configured): messages stay queued. To send, start with
NUDGE_CONFIG=examples/nudge.yaml (a relay on 127.0.0.1:2525) or your own configuration.
MSG
fi
echo "Stop with Ctrl-C."
wait $pid
