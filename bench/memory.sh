#!/usr/bin/env bash
# Memory benchmark: resident memory and disk per contact after CONTACTS identify calls with
# 10 traits each, beside a reference (the sqlite3 CLI inserting as many rows into a plain
# table). Prints one JSON object.
#
# Usage: bench/memory.sh [BUILD_DIR] [CONTACTS]     (defaults: ./build, 1000000)
#
# Steps: start nudge on a fresh data directory and read its VmRSS; send CONTACTS identify
# calls (userId, email and messageId unique per contact; email, first_name, last_name,
# company, plan, country, phone, created_at, seats, industry) to POST /v1/batch with
# bench/gen_identify.cc (compiled here with g++ -O2: BATCH messages per request over
# CONNECTIONS parallel keep-alive connections); wait for every acknowledgement; check that
# GET /api/v1/workspace reports CONTACTS contacts; read VmRSS and VmHWM (the peak) again,
# and the size of the data directory. RSS is also sampled every 0.5 s during the ingest.
#
# Reference, same script: sqlite3 CLI, one transaction, WAL, synchronous=FULL, CONTACTS rows of
# (id INTEGER PRIMARY KEY, traits TEXT) with the same traits as JSON: rows/s and file size.
# It has no index and no identity resolution: it is the floor of what storing the traits costs.
#
# A run is bounded: no batch starts after BENCH_TIMEOUT seconds. A run cut short is a failed
# benchmark ("ok": false); its figures are then per contact actually acknowledged, and
# "progress" ([seconds, contacts acknowledged] every 5 s) shows how the rate evolved.
#
# Settings (environment): BENCH_BATCH=250 BENCH_CONNECTIONS=8 messages per request and
# parallel requests; BENCH_TIMEOUT=300; BENCH_TMPDIR=/var/tmp (a real disk, not tmpfs);
# BENCH_KEEP=1 keeps the temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build}
[[ "$build" = /* ]] || build="$PWD/$build"
contacts=${2:-1000000}
nudge_bin="$build/nudge"
batch=${BENCH_BATCH:-250}
connections=${BENCH_CONNECTIONS:-8}
timeout=${BENCH_TIMEOUT:-300}

log() { echo "memory: $*" >&2; }
die() {
  log "$*"
  printf '{"benchmark":"memory","ok":false,"error":"%s"}\n' "${*//\"/\'}"
  exit 1
}
calc() { awk "BEGIN { printf \"${2:-%.6g}\", ($1) }"; }
jnum() { printf '%s' "$1" | grep -o "\"$2\":[-0-9.eE+]*" | head -1 | cut -d: -f2; }
now() { date +%s.%N; }

for tool in g++ curl sqlite3 awk base64; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (scripts/deps.sh bench)"
done
[ -x "$nudge_bin" ] || die "no nudge binary at $nudge_bin (build it first)"
[[ "$contacts" =~ ^[0-9]+$ ]] && [ "$contacts" -gt 0 ] || die "CONTACTS must be a positive number"

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/nudge-bench-mem.XXXXXX")
nudge_pid=""
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null
  [ -n "$nudge_pid" ] && kill -TERM "$nudge_pid" 2>/dev/null && wait "$nudge_pid" 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The generator, rebuilt when its source is newer than the binary.
gen="$build/bench/gen_identify"
mkdir -p "$build/bench"
if [ ! -x "$gen" ] || [ "$here/gen_identify.cc" -nt "$gen" ]; then
  log "compiling bench/gen_identify.cc"
  g++ -O2 -std=c++20 -pthread "$here/gen_identify.cc" -o "$gen" || die "cannot compile gen_identify.cc"
fi

# status_kb PID FIELD: a /proc/PID/status field in kB (VmRSS, VmHWM).
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- nudge
write_key="bench-write-$RANDOM$RANDOM"
admin_key="bench-admin-$RANDOM$RANDOM"
auth=$(printf '%s:' "$write_key" | base64 -w0)
data_dir="$tmp/data"
NUDGE_WRITE_KEY="$write_key" NUDGE_ADMIN_KEY="$admin_key" NUDGE_LOG_LEVEL=warn \
  "$nudge_bin" serve --listen 127.0.0.1:0 --data "$data_dir" >"$tmp/nudge.stdout" 2>"$tmp/nudge.stderr" &
nudge_pid=$!
port=""
for i in $(seq 1 100); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/nudge.stdout" 2>/dev/null | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 "$nudge_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$port" ] || die "nudge did not start: $(tail -3 "$tmp/nudge.stderr")"
url="http://127.0.0.1:$port"
data_fs=$(findmnt -n -o FSTYPE -T "$data_dir" 2>/dev/null || stat -f -c %T "$data_dir")
workspace() { curl -sf --max-time 30 -H "Authorization: Bearer $admin_key" "$url/api/v1/workspace"; }
workspace >/dev/null || die "GET /api/v1/workspace failed"
sleep 0.5
rss_before=$(status_kb "$nudge_pid" VmRSS)

# RSS sampler: the largest VmRSS seen, every 0.5 s, into a file.
(
  max=0
  while kill -0 "$nudge_pid" 2>/dev/null; do
    r=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$nudge_pid/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$max" ] && max=$r && echo "$max" >"$tmp/rss_max"
    sleep 0.5
  done
) &
sampler_pid=$!

log "nudge on $url (data on $data_fs): $contacts identify calls, $batch per batch, $connections connections"
gen_out=$("$gen" "$port" "$auth" "$contacts" "$batch" "$connections" "mem$RANDOM" "$timeout") || true
[ -n "$gen_out" ] || die "gen_identify printed nothing"
ingest_seconds=$(jnum "$gen_out" seconds)
acked=$(jnum "$gen_out" acknowledged)
[ "$acked" -gt 0 ] || die "no contact was acknowledged: $gen_out"

ws=$(workspace) || die "GET /api/v1/workspace failed"
stored_contacts=$(jnum "$ws" contacts)
stored_events=$(jnum "$ws" events)
rss_after=$(status_kb "$nudge_pid" VmRSS)
rss_peak=$(status_kb "$nudge_pid" VmHWM)
kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
rss_sampled_max=$(cat "$tmp/rss_max" 2>/dev/null || echo "$rss_after")
sleep 2
rss_idle=$(status_kb "$nudge_pid" VmRSS)

file_size() { [ -f "$1" ] && stat -c %s "$1" || echo 0; }
db_bytes=$(file_size "$data_dir/nudge.db")
wal_bytes=$(file_size "$data_dir/nudge.db-wal")
dir_bytes=$(du -sb "$data_dir" | cut -f1)

ok=true
problems=()
[ "$(jnum "$gen_out" failed_batches)" = 0 ] || problems+=("some batches were not acknowledged")
[ "$acked" = "$contacts" ] || problems+=("only $acked of $contacts contacts were acknowledged in ${timeout}s (BENCH_TIMEOUT)")
[ "$stored_contacts" = "$acked" ] || problems+=("the workspace reports $stored_contacts contacts, $acked were acknowledged")
[ "$stored_events" = "$acked" ] || problems+=("the workspace reports $stored_events events, $acked were acknowledged")
problem_json=""
for p in "${problems[@]+"${problems[@]}"}"; do problem_json+="${problem_json:+,}\"$p\""; ok=false; log "FAILED: $p"; done

# ---------------------------------------------------------------- sqlite3 reference
log "reference: sqlite3, $contacts rows in one transaction"
ref_db="$tmp/reference.db"
sqlite3 "$ref_db" "PRAGMA journal_mode=WAL;" >/dev/null
t0=$(now)
sqlite3 "$ref_db" <<SQL || die "the sqlite3 reference failed"
PRAGMA synchronous = FULL;
CREATE TABLE contacts(id INTEGER PRIMARY KEY, traits TEXT NOT NULL);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $contacts - 1),
  f(k, first, last) AS (VALUES (0,'Ada','Lovelace'),(1,'Grace','Hopper'),(2,'Alan','Turing'),
    (3,'Katherine','Johnson'),(4,'Linus','Torvalds'),(5,'Margaret','Hamilton'),
    (6,'Dennis','Ritchie'),(7,'Barbara','Liskov'),(8,'Ken','Thompson'),(9,'Frances','Allen'),
    (10,'Edsger','Dijkstra'),(11,'Radia','Perlman'),(12,'Donald','Knuth'),(13,'Hedy','Lamarr'),
    (14,'Tim','Berners-Lee'),(15,'Sophie','Wilson'))
INSERT INTO contacts(id, traits)
SELECT i + 1, json_object(
  'email', a.first || '.' || b.last || '.' || i || '@company' || (i % 5000) || '.example.com',
  'first_name', a.first, 'last_name', b.last,
  'company', 'Company ' || (i % 5000) || ' Ltd',
  'plan', json_extract('["free","trial","starter","growth","enterprise"]', '\$[' || (i % 5) || ']'),
  'country', json_extract('["US","DE","FR","GB","NL","ES","IT","CA","AU","SE"]', '\$[' || (i % 10) || ']'),
  'phone', printf('+1 415 2%02d %04d', (i / 10000) % 100, i % 10000),
  'created_at', printf('2023-%02d-%02dT%02d:%02d:00Z', 1 + i % 12, 1 + i % 28, i % 24, i % 60),
  'seats', 1 + i % 500,
  'industry', json_extract('["Software","E-commerce","Healthcare","Education","Finance","Media","Manufacturing","Travel","Non-profit","Real estate"]', '\$[' || (i % 10) || ']'))
FROM n JOIN f AS a ON a.k = i % 16 JOIN f AS b ON b.k = (i / 16) % 16;
COMMIT;
SQL
t1=$(now)
ref_seconds=$(calc "$t1 - $t0" "%.3f")
ref_rows=$(sqlite3 "$ref_db" "SELECT count(*) FROM contacts;")
ref_db_bytes=$(file_size "$ref_db")
ref_wal_bytes=$(file_size "$ref_db-wal")
[ "$ref_rows" = "$contacts" ] || { ok=false; problem_json+="${problem_json:+,}\"the reference stored $ref_rows rows\""; }

mb() { calc "$1 / 1048576" "%.1f"; }
per() { calc "$1 / $acked" "%.1f"; }     # per contact stored by nudge
per_ref() { calc "$1 / $ref_rows" "%.1f"; }
rb=$((rss_before * 1024)); ra=$((rss_after * 1024)); rp=$((rss_peak * 1024))
ri=$((rss_idle * 1024)); rs=$((rss_sampled_max * 1024))

cat <<EOF
{"benchmark":"memory","ok":$ok,"problems":[$problem_json],
"setup":{"cores":$(nproc),"data_fs":"$data_fs","batch":$batch,"connections":$connections,
 "load_average":$(cut -d' ' -f1 /proc/loadavg)},
"nudge":{"contacts":$contacts,"contacts_acknowledged":$acked,"contacts_stored":$stored_contacts,
 "events_stored":$stored_events,
 "ingest_seconds":$ingest_seconds,"contacts_per_s":$(calc "$acked / $ingest_seconds" "%.1f"),
 "generator":$gen_out,
 "rss_bytes":{"before":$rb,"after":$ra,"after_idle_2s":$ri,"peak_vmhwm":$rp,"peak_sampled":$rs},
 "rss_mb":{"before":$(mb $rb),"after":$(mb $ra),"after_idle_2s":$(mb $ri),"peak_vmhwm":$(mb $rp)},
 "rss_bytes_per_contact":{"after_minus_before":$(per $((ra - rb))),"peak_minus_before":$(per $((rp - rb)))},
 "rss_mb_per_million_contacts":$(calc "($ra - $rb) / $acked * 1000000 / 1048576" "%.1f"),
 "disk_bytes":{"data_dir":$dir_bytes,"db":$db_bytes,"wal":$wal_bytes},
 "disk_bytes_per_contact":$(per "$dir_bytes")},
"reference_sqlite3":{"rows":$ref_rows,"seconds":$ref_seconds,"rows_per_s":$(calc "$ref_rows / $ref_seconds" "%.1f"),
 "db_bytes":$ref_db_bytes,"wal_bytes":$ref_wal_bytes,"bytes_per_row":$(per_ref "$((ref_db_bytes + ref_wal_bytes))"),
 "sqlite_version":"$(sqlite3 --version | cut -d' ' -f1)"},
"nudge_vs_reference":{"rows_per_s":$(calc "($acked / $ingest_seconds) / ($ref_rows / $ref_seconds)" "%.3f"),
 "disk_bytes_per_contact":$(calc "($dir_bytes / $acked) / (($ref_db_bytes + $ref_wal_bytes) / $ref_rows)" "%.2f")}}
EOF
[ "$ok" = true ]
