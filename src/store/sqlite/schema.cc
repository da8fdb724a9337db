#include "store/sqlite/schema.h"

#include <iterator>
#include <string>

namespace nudge::store::sqlite {
namespace {

constexpr const char* kMigrations[] = {
    // 1: workspaces, contacts, identities, events.
    R"sql(
CREATE TABLE workspaces(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  write_key_hash TEXT NOT NULL UNIQUE,
  admin_key_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL);

CREATE TABLE contacts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: merged and erased ids stay dead
  ws INTEGER NOT NULL,
  user_id TEXT,
  email TEXT,
  phone TEXT,
  traits TEXT NOT NULL DEFAULT '{}',
  tags TEXT NOT NULL DEFAULT '[]',
  source TEXT,
  import_id TEXT,
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL);
CREATE UNIQUE INDEX contacts_user ON contacts(ws, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX contacts_email ON contacts(ws, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_phone ON contacts(ws, phone) WHERE phone IS NOT NULL;

CREATE TABLE identities(
  ws INTEGER NOT NULL,
  kind TEXT NOT NULL,
  value TEXT NOT NULL,
  contact_id INTEGER NOT NULL,
  PRIMARY KEY(ws, kind, value)) WITHOUT ROWID;
CREATE INDEX identities_contact ON identities(contact_id);

CREATE TABLE contact_merges(
  ws INTEGER NOT NULL,
  from_id INTEGER NOT NULL,
  into_id INTEGER NOT NULL,
  at INTEGER NOT NULL);

CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  ws INTEGER NOT NULL,
  contact_id INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  body TEXT NOT NULL);
CREATE UNIQUE INDEX events_message ON events(ws, message_id);
CREATE INDEX events_contact ON events(contact_id, timestamp);
)sql",
    // 2: definitions (segments, scoring, stages, ...), segment membership, lifecycle stages.
    R"sql(
CREATE TABLE definitions(
  ws INTEGER NOT NULL,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(ws, kind, id)) WITHOUT ROWID;

CREATE TABLE segment_members(
  ws INTEGER NOT NULL,
  segment TEXT NOT NULL,
  contact_id INTEGER NOT NULL,
  since INTEGER NOT NULL,
  PRIMARY KEY(ws, segment, contact_id)) WITHOUT ROWID;
CREATE INDEX segment_members_contact ON segment_members(contact_id);

CREATE TABLE contact_stages(
  contact_id INTEGER PRIMARY KEY,
  stage TEXT NOT NULL,
  since INTEGER NOT NULL);

CREATE TABLE stage_history(
  contact_id INTEGER NOT NULL,
  stage TEXT NOT NULL,
  previous TEXT,
  at INTEGER NOT NULL);
CREATE INDEX stage_history_contact ON stage_history(contact_id, at);
)sql",
    // 3: journeys (versions, status, instances, step log) and the outbox of messages.
    R"sql(
CREATE TABLE journey_versions(
  ws INTEGER NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(ws, journey, version)) WITHOUT ROWID;

CREATE TABLE journeys(
  ws INTEGER NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  status TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(ws, journey)) WITHOUT ROWID;

CREATE TABLE journey_instances(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ws INTEGER NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  contact_id INTEGER NOT NULL,
  status TEXT NOT NULL,
  step TEXT,
  step_since INTEGER,
  wake_at INTEGER,
  entered_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  trigger_key TEXT,
  data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX journey_instances_contact ON journey_instances(contact_id, journey);
CREATE INDEX journey_instances_journey ON journey_instances(ws, journey, status);
CREATE INDEX journey_instances_active ON journey_instances(status) WHERE status = 'active';

CREATE TABLE journey_steps(
  instance_id INTEGER NOT NULL,
  ws INTEGER NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  step TEXT NOT NULL,
  outcome TEXT NOT NULL,
  at INTEGER NOT NULL);
CREATE INDEX journey_steps_journey ON journey_steps(ws, journey, step);
CREATE INDEX journey_steps_instance ON journey_steps(instance_id);

CREATE TABLE messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ws INTEGER NOT NULL,
  contact_id INTEGER NOT NULL,
  journey TEXT,
  version INTEGER,
  step TEXT,
  instance_id INTEGER,
  channel TEXT NOT NULL,
  template TEXT,
  status TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  send_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  detail TEXT);
CREATE UNIQUE INDEX messages_key ON messages(ws, idempotency_key);
CREATE INDEX messages_contact ON messages(contact_id, channel, created_at);
CREATE INDEX messages_status ON messages(status, send_at);
CREATE INDEX messages_journey ON messages(ws, journey, created_at);
)sql",
    // 4: consent (subscriptions and their history), suppressions, secrets, delivery attempts.
    R"sql(
CREATE TABLE subscriptions(
  ws INTEGER NOT NULL,
  contact_id INTEGER NOT NULL,
  channel TEXT NOT NULL,
  topic TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(contact_id, channel, topic)) WITHOUT ROWID;

CREATE TABLE consent_log(
  ws INTEGER NOT NULL,
  contact_id INTEGER NOT NULL,
  channel TEXT NOT NULL,
  topic TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  at INTEGER NOT NULL,
  source TEXT NOT NULL,
  ip TEXT,
  detail TEXT);
CREATE INDEX consent_log_contact ON consent_log(contact_id, at);

CREATE TABLE suppressions(
  ws INTEGER NOT NULL,
  channel TEXT NOT NULL,
  address TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  detail TEXT,
  PRIMARY KEY(ws, channel, address)) WITHOUT ROWID;

CREATE TABLE secrets(
  ws INTEGER NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(ws, name)) WITHOUT ROWID;

ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN message_id_header TEXT;
ALTER TABLE messages ADD COLUMN recipient TEXT;
CREATE INDEX messages_header ON messages(message_id_header) WHERE message_id_header IS NOT NULL;

CREATE TABLE bounce_counts(
  contact_id INTEGER PRIMARY KEY,
  soft INTEGER NOT NULL DEFAULT 0,
  hard INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL);
)sql",
    // 5: positions the store keeps in step with its own writes (how far the inbox is applied).
    R"sql(
CREATE TABLE marks(
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL) WITHOUT ROWID;
)sql",
    // 6: the journey step log as one row per instance and write (its entries a JSON array of
    // [step, outcome, at]) and the per-step counts kept as counters, in place of a row per entry
    // with two indexes; journey_steps stays as a view of the entries. Existing entries move
    // over in their order.
    R"sql(
CREATE TABLE journey_step_counts(
  ws INTEGER NOT NULL,
  journey TEXT NOT NULL,
  step TEXT NOT NULL,
  outcome TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY(ws, journey, step, outcome)) WITHOUT ROWID;
INSERT INTO journey_step_counts(ws, journey, step, outcome, n)
  SELECT ws, journey, step, outcome, count(*) FROM journey_steps
  GROUP BY ws, journey, step, outcome;

CREATE TABLE journey_step_log(
  instance_id INTEGER NOT NULL,
  entries TEXT NOT NULL);
INSERT INTO journey_step_log(instance_id, entries)
  SELECT instance_id, json_group_array(json_array(step, outcome, at))
  FROM (SELECT instance_id, step, outcome, at FROM journey_steps ORDER BY instance_id, rowid)
  GROUP BY instance_id;
CREATE INDEX journey_step_log_instance ON journey_step_log(instance_id);
DROP TABLE journey_steps;

-- The entries one per row, for queries by hand (the instances of erased contacts left out).
CREATE VIEW journey_steps AS
  SELECT l.instance_id AS instance_id, i.ws AS ws, i.journey AS journey, i.version AS version,
         json_extract(e.value, '$[0]') AS step, json_extract(e.value, '$[1]') AS outcome,
         json_extract(e.value, '$[2]') AS at
  FROM journey_step_log l JOIN journey_instances i ON i.id = l.instance_id
  JOIN json_each(l.entries) e;
)sql",
    // 7: events nudge derives whose messageIds are unique by construction (they end in what
    // caused them; store::kUncheckedDerivedPrefix) leave the messageId index: they were most of
    // its entries and never a duplicate. The index keeps client events and the derived events
    // that are emitted again on purpose and must be stored once (an email's feedback).
    R"sql(
DROP INDEX events_message;
CREATE UNIQUE INDEX events_message ON events(ws, message_id)
  WHERE substr(message_id, 1, 7) <> 'nudge:~';
)sql",
    // 8: indexes that give the admin listings and delivery their rows in id order, so that a
    // page reads only its rows: a journey's instances and messages by (ws, journey), the
    // status no longer in the instances' (a finished instance left it alone), messages by
    // status, and those held for quiet hours by their time.
    R"sql(
DROP INDEX journey_instances_journey;
CREATE INDEX journey_instances_journey ON journey_instances(ws, journey);
DROP INDEX messages_journey;
CREATE INDEX messages_journey ON messages(ws, journey);
DROP INDEX messages_status;
CREATE INDEX messages_status ON messages(status);
DROP INDEX IF EXISTS messages_deferred;
CREATE INDEX messages_deferred ON messages(send_at) WHERE status = 'deferred_quiet_hours';
)sql",
    // 9: a journey's entry rules ask of a contact's past instances from the index alone (was
    // every row of the contact's history, read on each entry): whether one was started by
    // this very trigger (a seek), and when the newest was entered.
    R"sql(
DROP INDEX journey_instances_contact;
CREATE INDEX journey_instances_contact
  ON journey_instances(contact_id, journey, trigger_key, entered_at);
)sql",
};

constexpr int kVersion = static_cast<int>(std::size(kMigrations));

}  // namespace

Status Migrate(Db& db) {
  NUDGE_TRY(db.Exec("BEGIN IMMEDIATE"));
  int version = 0;
  {
    auto stmt = db.Prepare("PRAGMA user_version");
    if (!stmt) return stmt.error();
    StmtUse use(**stmt);
    auto row = use->Step();
    if (!row) return row.error();
    version = static_cast<int>(use->Int(0));
  }
  if (version > kVersion) {
    (void)db.Exec("ROLLBACK");
    return Status(Code::kFailedPrecondition,
                  "the database has schema version " + std::to_string(version) +
                      ", newer than this nudge knows (" + std::to_string(kVersion) + ")");
  }
  for (int v = version; v < kVersion; ++v) {
    Status s = db.Exec(kMigrations[v]);
    if (!s.ok()) {
      (void)db.Exec("ROLLBACK");
      return Status::Internal("migration " + std::to_string(v + 1) + " failed: " + s.message());
    }
  }
  const std::string set = "PRAGMA user_version = " + std::to_string(kVersion);
  NUDGE_TRY(db.Exec(set.c_str()));
  return db.Exec("COMMIT");
}

}  // namespace nudge::store::sqlite
