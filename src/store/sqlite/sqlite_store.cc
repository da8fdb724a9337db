// The SQLite implementation of Store: WAL mode, synchronous=FULL, one writer thread that
// commits queued writes in groups, and a small pool of read connections.
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "core/clock.h"
#include "core/json.h"
#include "core/metrics.h"
#include "store/sqlite/checkpointer.h"
#include "store/sqlite/db.h"
#include "store/sqlite/listing_sql.h"
#include "store/sqlite/schema.h"
#include "store/store.h"

namespace nudge::store {
namespace sqlite {
namespace {

#define NUDGE_STMT(var, sql)                               \
  auto var##_prepared = db_.Prepare(sql);                  \
  if (!var##_prepared) return Err(var##_prepared.error()); \
  StmtUse var(**var##_prepared)

// The rows the messageId index holds (migration 7): all but the derived events under
// kUncheckedDerivedPrefix. A query by messageId names it so that SQLite can use the index.
#define NUDGE_CHECKED_MESSAGE_ID "substr(message_id, 1, 7) <> 'nudge:~'"
static_assert(kUncheckedDerivedPrefix == "nudge:~");

Contact ReadContact(Stmt& s) {
  Contact c;
  c.id = s.Int(0);
  c.workspace = s.Int(1);
  c.user_id = s.OptText(2);
  c.email = s.OptText(3);
  c.phone = s.OptText(4);
  c.traits = s.Text(5);
  c.tags = s.Text(6);
  c.source = s.OptText(7);
  c.import_id = s.OptText(8);
  c.created_at = s.Int(9);
  c.last_seen_at = s.Int(10);
  return c;
}

Event ReadEvent(Stmt& q) {
  Event e;
  e.id = q.Int(0);
  e.workspace = q.Int(1);
  e.contact = q.Int(2);
  e.message_id = q.Text(3);
  e.type = q.Text(4);
  e.name = q.Text(5);
  e.timestamp = q.Int(6);
  e.received_at = q.Int(7);
  e.body = q.Text(8);
  return e;
}

Definition ReadDefinition(Stmt& q) {
  return Definition{q.Int(0), q.Text(1), q.Text(2), q.Int(3), q.Text(4), q.Int(5), q.Int(6)};
}

SegmentMember ReadMember(Stmt& q) { return SegmentMember{q.Int(0), q.Text(1), q.Int(2), q.Int(3)}; }

constexpr const char* kInstanceColumns =
    "id, ws, journey, version, contact_id, status, coalesce(step, ''), coalesce(step_since, 0), "
    "wake_at, entered_at, updated_at, coalesce(trigger_key, ''), data";

Instance ReadInstance(Stmt& q) {
  Instance i;
  i.id = q.Int(0);
  i.workspace = q.Int(1);
  i.journey = q.Text(2);
  i.version = q.Int(3);
  i.contact = q.Int(4);
  i.status = q.Text(5);
  i.step = q.Text(6);
  i.step_since = q.Int(7);
  if (!q.IsNull(8)) i.wake_at = q.Int(8);
  i.entered_at = q.Int(9);
  i.updated_at = q.Int(10);
  i.trigger_key = q.Text(11);
  i.data = q.Text(12);
  return i;
}

Message ReadMessage(Stmt& q) {
  Message m;
  m.id = q.Int(0);
  m.workspace = q.Int(1);
  m.contact = q.Int(2);
  m.journey = q.Text(3);
  m.version = q.Int(4);
  m.step = q.Text(5);
  m.instance = q.Int(6);
  m.channel = q.Text(7);
  m.template_id = q.Text(8);
  m.status = q.Text(9);
  m.idempotency_key = q.Text(10);
  m.payload = q.Text(11);
  m.created_at = q.Int(12);
  m.send_at = q.Int(13);
  m.updated_at = q.Int(14);
  m.detail = q.Text(15);
  m.attempts = q.Int(16);
  m.message_id_header = q.Text(17);
  m.recipient = q.Text(18);
  return m;
}

Subscription ReadSubscription(Stmt& q) {
  return Subscription{q.Int(0), q.Int(1), q.Text(2), q.Text(3), q.Text(4), q.Int(5)};
}

Suppression ReadSuppression(Stmt& q) {
  return Suppression{q.Int(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4), q.Text(5)};
}

template <typename T, typename F>
Result<std::vector<T>> Collect(StmtUse& q, F read) {
  std::vector<T> out;
  for (;;) {
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return out;
    out.push_back(read(*q));
  }
}

// Calls fn with each row as `read` makes it, until the rows end or fn fails.
template <typename F, typename Fn>
Status ForEachRow(StmtUse& q, F read, const Fn& fn) {
  for (;;) {
    auto row = q->Step();
    if (!row) return row.error();
    if (!*row) return Status::Ok();
    NUDGE_TRY(fn(read(*q)));
  }
}

Result<std::optional<Contact>> OneContact(StmtUse& q) {
  auto row = q->Step();
  if (!row) return Err(row.error());
  if (!*row) return std::optional<Contact>();
  return std::optional<Contact>(ReadContact(*q));
}

// The statements of one connection, as the ReadTxn/WriteTxn interfaces see them.
class Txn final : public WriteTxn {
 public:
  explicit Txn(Db& db) : db_(db) {}

  Result<std::vector<Workspace>> ListWorkspaces() override {
    NUDGE_STMT(q,
               "SELECT id, name, write_key_hash, admin_key_hash, created_at FROM workspaces "
               "ORDER BY id");
    return Collect<Workspace>(q, [](Stmt& s) {
      return Workspace{s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)};
    });
  }

  Result<std::optional<Contact>> GetContact(ContactId id) override {
    NUDGE_STMT(q, kContactById);
    q->Bind(1, id);
    return OneContact(q);
  }

  Result<std::optional<Contact>> FindContactByUserId(WorkspaceId ws,
                                                     std::string_view user_id) override {
    {
      NUDGE_STMT(
          q, "SELECT " NUDGE_CONTACT_COLUMNS " FROM contacts c WHERE c.ws = ? AND c.user_id = ?");
      q->Bind(1, ws).Bind(2, user_id);
      auto found = OneContact(q);
      if (!found || *found) return found;
    }
    NUDGE_STMT(a,
               "SELECT contact_id FROM identities WHERE ws = ? AND kind = 'alias' AND value = ?");
    a->Bind(1, ws).Bind(2, user_id);
    auto row = a->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Contact>();
    return GetContact(a->Int(0));
  }

  Result<std::optional<ContactId>> FindContactIdByUserId(WorkspaceId ws,
                                                         std::string_view user_id) override {
    {
      NUDGE_STMT(q, "SELECT id FROM contacts WHERE ws = ? AND user_id = ?");
      q->Bind(1, ws).Bind(2, user_id);
      auto row = q->Step();
      if (!row) return Err(row.error());
      if (*row) return std::optional<ContactId>(q->Int(0));
    }
    NUDGE_STMT(a,
               "SELECT contact_id FROM identities WHERE ws = ? AND kind = 'alias' AND value = ?");
    a->Bind(1, ws).Bind(2, user_id);
    auto row = a->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<ContactId>();
    return std::optional<ContactId>(a->Int(0));
  }

  Result<std::optional<ContactId>> FindContactByAnonymousId(WorkspaceId ws,
                                                            std::string_view anon) override {
    NUDGE_STMT(q,
               "SELECT contact_id FROM identities WHERE ws = ? AND kind = 'anonymous' AND "
               "value = ?");
    q->Bind(1, ws).Bind(2, anon);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<ContactId>();
    return std::optional<ContactId>(q->Int(0));
  }

  Result<std::optional<Contact>> FindContactByEmail(WorkspaceId ws,
                                                    std::string_view email) override {
    NUDGE_STMT(q, "SELECT " NUDGE_CONTACT_COLUMNS
                  " FROM contacts c WHERE c.ws = ? AND c.email IS NOT NULL AND lower(c.email) = "
                  "lower(?) ORDER BY c.id LIMIT 1");
    q->Bind(1, ws).Bind(2, email);
    return OneContact(q);
  }

  Result<std::optional<Contact>> FindContactByPhone(WorkspaceId ws,
                                                    std::string_view e164) override {
    NUDGE_STMT(q, "SELECT " NUDGE_CONTACT_COLUMNS
                  " FROM contacts c WHERE c.ws = ? AND c.phone IS NOT NULL AND c.phone = ? ORDER "
                  "BY c.id LIMIT 1");
    q->Bind(1, ws).Bind(2, e164);
    return OneContact(q);
  }

  Result<std::vector<std::string>> ListIdentities(ContactId id, IdentityKind kind) override {
    NUDGE_STMT(q, "SELECT value FROM identities WHERE contact_id = ? AND kind = ? ORDER BY value");
    q->Bind(1, id).Bind(2, IdentityKindName(kind));
    return Collect<std::string>(q, [](Stmt& s) { return s.Text(0); });
  }

  Result<std::vector<Contact>> ListContacts(WorkspaceId ws, ContactId after, int limit) override {
    NUDGE_STMT(q, "SELECT " NUDGE_CONTACT_COLUMNS
                  " FROM contacts c WHERE c.ws = ? AND c.id > ? ORDER BY c.id LIMIT ?");
    q->Bind(1, ws).Bind(2, after).Bind(3, static_cast<int64_t>(limit));
    return Collect<Contact>(q, ReadContact);
  }

  Result<int64_t> CountContacts(WorkspaceId ws) override {
    NUDGE_STMT(q, "SELECT count(*) FROM contacts WHERE ws = ?");
    q->Bind(1, ws);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  Result<std::vector<Event>> ListEvents(ContactId id, int limit, EventOrigin origin) override {
    // Events nudge derives have messageIds in the reserved "nudge:" namespace.
    NUDGE_STMT(q,
               "SELECT id, ws, contact_id, message_id, type, name, timestamp, received_at, "
               "body FROM events WHERE contact_id = ? AND (? = 0 OR (? = 1) = "
               "(substr(message_id, 1, 6) <> 'nudge:')) ORDER BY timestamp DESC, id DESC "
               "LIMIT ?");
    const int64_t o = static_cast<int64_t>(origin);
    q->Bind(1, id).Bind(2, o).Bind(3, o).Bind(4, static_cast<int64_t>(limit));
    return Collect<Event>(q, ReadEvent);
  }

  Result<std::optional<Event>> GetEvent(int64_t id) override {
    NUDGE_STMT(q,
               "SELECT id, ws, contact_id, message_id, type, name, timestamp, received_at, "
               "body FROM events WHERE id = ?");
    q->Bind(1, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Event>();
    return std::optional<Event>(ReadEvent(*q));
  }

  Result<int64_t> CountEvents(WorkspaceId ws, EventOrigin origin) override {
    NUDGE_STMT(q,
               "SELECT count(*) FROM events WHERE ws = ? AND (? = 0 OR (? = 1) = "
               "(substr(message_id, 1, 6) <> 'nudge:'))");
    const int64_t o = static_cast<int64_t>(origin);
    q->Bind(1, ws).Bind(2, o).Bind(3, o);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  Result<bool> HasMessage(WorkspaceId ws, std::string_view message_id) override {
    NUDGE_STMT(
        q, "SELECT 1 FROM events WHERE ws = ? AND message_id = ? AND " NUDGE_CHECKED_MESSAGE_ID);
    q->Bind(1, ws).Bind(2, message_id);
    return q->Step();
  }

  Status ScanContacts(const std::function<Status(const Contact&)>& fn) override {
    NUDGE_STMT(q,
               "SELECT id, ws, user_id, email, phone, traits, tags, source, import_id, "
               "created_at, last_seen_at FROM contacts ORDER BY id");
    return ForEachRow(q, ReadContact, fn);
  }

  Status ScanEvents(int64_t after, int64_t upto,
                    const std::function<Status(const Event&)>& fn) override {
    NUDGE_STMT(q,
               "SELECT id, ws, contact_id, message_id, type, name, timestamp, received_at, "
               "body FROM events WHERE id > ? AND id <= ? ORDER BY id");
    q->Bind(1, after).Bind(2, upto > 0 ? upto : std::numeric_limits<int64_t>::max());
    return ForEachRow(q, ReadEvent, fn);
  }

  Result<std::vector<Event>> EventsAfter(WorkspaceId ws, int64_t after, int limit,
                                         EventOrigin origin) override {
    NUDGE_STMT(q,
               "SELECT id, ws, contact_id, message_id, type, name, timestamp, received_at, "
               "body FROM events WHERE id > ? AND ws = ? AND (? = 0 OR (? = 1) = "
               "(substr(message_id, 1, 6) <> 'nudge:')) ORDER BY id LIMIT ?");
    const int64_t o = static_cast<int64_t>(origin);
    q->Bind(1, after).Bind(2, ws).Bind(3, o).Bind(4, o).Bind(5, static_cast<int64_t>(limit));
    return Collect<Event>(q, ReadEvent);
  }

  Result<int64_t> MaxEventId() override {
    NUDGE_STMT(q, "SELECT coalesce(max(id), 0) FROM events");
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  Result<std::optional<Definition>> GetDefinition(WorkspaceId ws, std::string_view kind,
                                                  std::string_view id) override {
    NUDGE_STMT(q,
               "SELECT ws, kind, id, version, body, created_at, updated_at FROM definitions "
               "WHERE ws = ? AND kind = ? AND id = ?");
    q->Bind(1, ws).Bind(2, kind).Bind(3, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Definition>();
    return std::optional<Definition>(ReadDefinition(*q));
  }

  Result<std::vector<Definition>> ListDefinitions(WorkspaceId ws, std::string_view kind) override {
    NUDGE_STMT(q,
               "SELECT ws, kind, id, version, body, created_at, updated_at FROM definitions "
               "WHERE ws = ? AND kind = ? ORDER BY id");
    q->Bind(1, ws).Bind(2, kind);
    return Collect<Definition>(q, ReadDefinition);
  }

  Result<std::vector<Definition>> AllDefinitions(std::string_view kind) override {
    NUDGE_STMT(q,
               "SELECT ws, kind, id, version, body, created_at, updated_at FROM definitions "
               "WHERE kind = ? ORDER BY ws, id");
    q->Bind(1, kind);
    return Collect<Definition>(q, ReadDefinition);
  }

  Result<std::vector<SegmentMember>> ListSegmentMembers(WorkspaceId ws, std::string_view segment,
                                                        ContactId after, int limit) override {
    NUDGE_STMT(q,
               "SELECT ws, segment, contact_id, since FROM segment_members WHERE ws = ? AND "
               "segment = ? AND contact_id > ? ORDER BY contact_id LIMIT ?");
    q->Bind(1, ws).Bind(2, segment).Bind(3, after).Bind(4, static_cast<int64_t>(limit));
    return Collect<SegmentMember>(q, ReadMember);
  }

  Status ScanSegmentMembers(const std::function<Status(const SegmentMember&)>& fn) override {
    NUDGE_STMT(q, "SELECT ws, segment, contact_id, since FROM segment_members");
    return ForEachRow(q, ReadMember, fn);
  }

  Result<std::vector<SegmentMember>> SegmentsOfContact(ContactId id) override {
    NUDGE_STMT(q,
               "SELECT ws, segment, contact_id, since FROM segment_members WHERE contact_id = ? "
               "ORDER BY segment");
    q->Bind(1, id);
    return Collect<SegmentMember>(q, ReadMember);
  }

  Result<std::optional<StageEntry>> GetContactStage(ContactId id) override {
    NUDGE_STMT(q, "SELECT contact_id, stage, since FROM contact_stages WHERE contact_id = ?");
    q->Bind(1, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<StageEntry>();
    return std::optional<StageEntry>(StageEntry{q->Int(0), q->Text(1), "", q->Int(2)});
  }

  Result<std::vector<StageEntry>> StageHistory(ContactId id) override {
    NUDGE_STMT(q,
               "SELECT contact_id, stage, coalesce(previous, ''), at FROM stage_history "
               "WHERE contact_id = ? ORDER BY at, rowid");
    q->Bind(1, id);
    return Collect<StageEntry>(q, [](Stmt& s) {
      return StageEntry{s.Int(0), s.Text(1), s.Text(2), s.Int(3)};
    });
  }

  Status ScanContactStages(const std::function<Status(const StageEntry&)>& fn) override {
    NUDGE_STMT(q, "SELECT contact_id, stage, since FROM contact_stages");
    return ForEachRow(
        q,
        [](Stmt& s) {
          return StageEntry{s.Int(0), s.Text(1), "", s.Int(2)};
        },
        fn);
  }

  // ---- journeys (reads) ----

  Result<std::vector<JourneyRecord>> ListJourneys(WorkspaceId ws) override {
    NUDGE_STMT(q,
               "SELECT ws, journey, version, status, updated_at FROM journeys "
               "WHERE ? = 0 OR ws = ? ORDER BY ws, journey");
    q->Bind(1, ws).Bind(2, ws);
    return Collect<JourneyRecord>(q, [](Stmt& s) {
      return JourneyRecord{s.Int(0), s.Text(1), s.Int(2), s.Text(3), s.Int(4)};
    });
  }

  Result<std::optional<std::string>> GetJourneyVersion(WorkspaceId ws, std::string_view journey,
                                                       int64_t version) override {
    NUDGE_STMT(q, "SELECT body FROM journey_versions WHERE ws = ? AND journey = ? AND version = ?");
    q->Bind(1, ws).Bind(2, journey).Bind(3, version);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<std::string>();
    return std::optional<std::string>(q->Text(0));
  }

  Result<std::optional<Instance>> GetInstance(int64_t id) override {
    NUDGE_STMT(q, "SELECT " NUDGE_INSTANCE_COLUMNS " FROM journey_instances WHERE id = ?");
    q->Bind(1, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Instance>();
    return std::optional<Instance>(ReadInstance(*q));
  }

  // Newest first, a page at a time (listing_sql.h).
  Result<std::vector<Instance>> ListInstances(WorkspaceId ws, std::string_view journey,
                                              std::optional<ContactId> contact, int limit,
                                              int64_t before_id) override {
    const int64_t below = before_id > 0 ? before_id : std::numeric_limits<int64_t>::max();
    if (contact) {
      NUDGE_STMT(q, kInstancesOfJourneyAndContact);
      q->Bind(1, *contact).Bind(2, journey).Bind(3, ws).Bind(4, below);
      q->Bind(5, static_cast<int64_t>(limit));
      return Collect<Instance>(q, ReadInstance);
    }
    NUDGE_STMT(q, kInstancesOfJourney);
    q->Bind(1, ws).Bind(2, journey).Bind(3, below).Bind(4, static_cast<int64_t>(limit));
    return Collect<Instance>(q, ReadInstance);
  }

  Result<EntryPast> EntryPastOf(ContactId contact, std::string_view journey,
                                std::string_view trigger_key, bool want_last) override {
    NUDGE_STMT(q, kEntryPast);
    q->Bind(1, contact).Bind(2, journey).Bind(3, trigger_key).Bind(4, int64_t{want_last});
    NUDGE_ASSIGN_OR_RETURN(bool row, q->Step());
    EntryPast past;
    if (!row) return past;
    past.any = q->Int(0) != 0;
    past.same_trigger = q->Int(1) != 0;
    past.last_entered_at = q->Int(2);
    return past;
  }

  Status ScanActiveInstances(const std::function<Status(const Instance&)>& fn) override {
    NUDGE_STMT(q,
               "SELECT " NUDGE_INSTANCE_COLUMNS " FROM journey_instances WHERE status = 'active'");
    return ForEachRow(q, ReadInstance, fn);
  }

  Result<std::vector<StepCount>> JourneyStepCounts(WorkspaceId ws,
                                                   std::string_view journey) override {
    NUDGE_TRY(FlushStepLog());
    NUDGE_STMT(q, "SELECT step, outcome, n FROM journey_step_counts WHERE ws = ? AND journey = ?");
    q->Bind(1, ws).Bind(2, journey);
    NUDGE_ASSIGN_OR_RETURN(std::vector<StepCount> out, Collect<StepCount>(q, [](Stmt& s) {
                             return StepCount{s.Text(0), s.Text(1), s.Int(2)};
                           }));
    // Inside a write: the counts this group has not written yet.
    for (const auto* counts : {&group_counts_, &write_counts_}) {
      for (const auto& [key, n] : *counts) {
        if (std::get<0>(key) != ws || std::get<1>(key) != journey) continue;
        auto it = std::find_if(out.begin(), out.end(), [&](const StepCount& c) {
          return c.step == std::get<2>(key) && c.outcome == std::get<3>(key);
        });
        if (it == out.end()) it = out.insert(out.end(), {std::get<2>(key), std::get<3>(key), 0});
        it->count += n;
      }
    }
    return out;
  }

  Result<std::vector<std::tuple<std::string, std::string, Millis>>> InstanceSteps(
      int64_t instance) override {
    NUDGE_TRY(FlushStepLog());
    NUDGE_STMT(q,
               "SELECT json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), "
               "json_extract(e.value, '$[2]') FROM journey_step_log l, json_each(l.entries) e "
               "WHERE l.instance_id = ? ORDER BY l.rowid, e.key");
    q->Bind(1, instance);
    return Collect<std::tuple<std::string, std::string, Millis>>(
        q, [](Stmt& s) { return std::make_tuple(s.Text(0), s.Text(1), s.Int(2)); });
  }

  // Newest first, a page at a time, each filter by its own statement (listing_sql.h).
  Result<std::vector<Message>> ListMessages(const MessageFilter& f) override {
    const int64_t below = f.before_id > 0 ? f.before_id : std::numeric_limits<int64_t>::max();
    const int64_t limit = f.limit;
    const int64_t has_journey = f.journey ? 1 : 0;
    const int64_t has_status = f.status ? 1 : 0;
    const std::string status = f.status.value_or("");
    if (f.contact) {
      NUDGE_STMT(q, kMessagesOfContact);
      q->Bind(1, *f.contact).Bind(2, f.workspace).Bind(3, has_journey);
      q->Bind(4, f.journey.value_or("")).Bind(5, has_status).Bind(6, status).Bind(7, below);
      q->Bind(8, limit);
      return Collect<Message>(q, ReadMessage);
    }
    if (f.journey) {
      NUDGE_STMT(q, kMessagesOfJourney);
      q->Bind(1, f.workspace).Bind(2, *f.journey).Bind(3, has_status).Bind(4, status);
      q->Bind(5, below).Bind(6, limit);
      return Collect<Message>(q, ReadMessage);
    }
    if (f.status) {
      NUDGE_STMT(q, kMessagesWithStatus);
      q->Bind(1, status).Bind(2, f.workspace).Bind(3, below).Bind(4, limit);
      return Collect<Message>(q, ReadMessage);
    }
    NUDGE_STMT(q, kMessagesOfWorkspace);
    q->Bind(1, f.workspace).Bind(2, below).Bind(3, limit);
    return Collect<Message>(q, ReadMessage);
  }

  Result<std::vector<Subscription>> SubscriptionsOf(ContactId id) override {
    NUDGE_STMT(q,
               "SELECT ws, contact_id, channel, topic, status, updated_at FROM subscriptions "
               "WHERE contact_id = ? ORDER BY channel, topic");
    q->Bind(1, id);
    return Collect<Subscription>(q, ReadSubscription);
  }

  Status ScanSubscriptions(const std::function<Status(const Subscription&)>& fn) override {
    NUDGE_STMT(q, "SELECT ws, contact_id, channel, topic, status, updated_at FROM subscriptions");
    return ForEachRow(q, ReadSubscription, fn);
  }

  Result<std::vector<ConsentRecord>> ConsentHistory(ContactId id) override {
    NUDGE_STMT(q,
               "SELECT ws, contact_id, channel, topic, status, at, source, coalesce(ip, ''), "
               "coalesce(detail, '') FROM consent_log WHERE contact_id = ? ORDER BY at, rowid");
    q->Bind(1, id);
    return Collect<ConsentRecord>(q, [](Stmt& s) {
      return ConsentRecord{ReadSubscription(s), s.Text(6), s.Text(7), s.Text(8)};
    });
  }

  Result<std::optional<Suppression>> FindSuppression(WorkspaceId ws, std::string_view channel,
                                                     std::string_view address) override {
    NUDGE_STMT(q,
               "SELECT ws, channel, address, reason, created_at, coalesce(detail, '') FROM "
               "suppressions WHERE ws = ? AND channel = ? AND address = ?");
    q->Bind(1, ws).Bind(2, channel).Bind(3, address);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Suppression>();
    return std::optional<Suppression>(ReadSuppression(*q));
  }

  Result<std::vector<Suppression>> ListSuppressions(WorkspaceId ws, std::string_view after,
                                                    int limit) override {
    NUDGE_STMT(q,
               "SELECT ws, channel, address, reason, created_at, coalesce(detail, '') FROM "
               "suppressions WHERE ws = ? AND address > ? ORDER BY address LIMIT ?");
    q->Bind(1, ws).Bind(2, after).Bind(3, static_cast<int64_t>(limit));
    return Collect<Suppression>(q, ReadSuppression);
  }

  Result<std::optional<std::string>> GetSecret(WorkspaceId ws, std::string_view name) override {
    NUDGE_STMT(q, "SELECT value FROM secrets WHERE ws = ? AND name = ?");
    q->Bind(1, ws).Bind(2, name);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<std::string>();
    return std::optional<std::string>(q->Text(0));
  }

  Result<int64_t> GetMark(std::string_view name) override {
    NUDGE_STMT(q, "SELECT value FROM marks WHERE name = ?");
    q->Bind(1, name);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return *row ? q->Int(0) : 0;
  }

  Result<std::optional<Message>> GetMessage(int64_t id) override {
    NUDGE_STMT(q, "SELECT " NUDGE_MESSAGE_COLUMNS " FROM messages WHERE id = ?");
    q->Bind(1, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Message>();
    return std::optional<Message>(ReadMessage(*q));
  }

  Result<std::optional<Message>> FindMessageByHeader(std::string_view message_id) override {
    NUDGE_STMT(q, "SELECT " NUDGE_MESSAGE_COLUMNS " FROM messages WHERE message_id_header = ?");
    q->Bind(1, message_id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    if (!*row) return std::optional<Message>();
    return std::optional<Message>(ReadMessage(*q));
  }

  // Due messages in two parts, each read in index order (listing_sql.h).
  Result<std::vector<Message>> DueMessages(Millis now, int limit, DueCursor& cursor) override {
    std::vector<Message> page;
    if (!cursor.queued) {
      NUDGE_STMT(q, kDueDeferredMessages);
      q->Bind(1, now)
          .Bind(2, cursor.send_at)
          .Bind(3, cursor.id)
          .Bind(4, static_cast<int64_t>(limit));
      NUDGE_ASSIGN_OR_RETURN(page, Collect<Message>(q, ReadMessage));
      if (!page.empty()) {
        cursor.send_at = page.back().send_at;
        cursor.id = page.back().id;
      }
      if (static_cast<int>(page.size()) == limit) return page;
      cursor = DueCursor{.queued = true};
    }
    NUDGE_STMT(q, kDueQueuedMessages);
    q->Bind(1, cursor.id).Bind(2, now).Bind(3, static_cast<int64_t>(limit - page.size()));
    NUDGE_ASSIGN_OR_RETURN(auto queued, Collect<Message>(q, ReadMessage));
    if (!queued.empty()) cursor.id = queued.back().id;
    for (auto& m : queued) page.push_back(std::move(m));
    return page;
  }

  Result<int64_t> CountSentMessages(ContactId contact, std::string_view channel, Millis since,
                                    int64_t except) override {
    NUDGE_STMT(q,
               "SELECT count(*) FROM messages WHERE contact_id = ? AND channel = ? AND "
               "created_at > ? AND status IN ('sending', 'sent') AND id <> ?");
    q->Bind(1, contact).Bind(2, channel).Bind(3, since).Bind(4, except);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  Result<int64_t> CountRecentMessages(ContactId contact, std::string_view channel,
                                      Millis since) override {
    NUDGE_STMT(q,
               "SELECT count(*) FROM messages WHERE contact_id = ? AND channel = ? AND "
               "created_at > ? AND status IN ('queued', 'sending', 'sent', "
               "'deferred_quiet_hours')");
    q->Bind(1, contact).Bind(2, channel).Bind(3, since);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  // ---- writes ----

  Status PutJourneyVersion(WorkspaceId ws, std::string_view journey, int64_t version,
                           std::string_view body, Millis now) override {
    NUDGE_STMT(q,
               "INSERT OR REPLACE INTO journey_versions(ws, journey, version, body, created_at) "
               "VALUES(?, ?, ?, ?, ?)");
    q->Bind(1, ws).Bind(2, journey).Bind(3, version).Bind(4, body).Bind(5, now);
    return q->Exec();
  }

  Status PutJourney(const JourneyRecord& r) override {
    NUDGE_STMT(q,
               "INSERT OR REPLACE INTO journeys(ws, journey, version, status, updated_at) "
               "VALUES(?, ?, ?, ?, ?)");
    q->Bind(1, r.workspace).Bind(2, r.journey).Bind(3, r.version).Bind(4, r.status);
    q->Bind(5, r.updated_at);
    return q->Exec();
  }

  Result<int64_t> InsertInstance(const Instance& i) override {
    NUDGE_STMT(q,
               "INSERT INTO journey_instances(ws, journey, version, contact_id, status, step, "
               "step_since, wake_at, entered_at, updated_at, trigger_key, data) "
               "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    BindInstance(*q, i);
    NUDGE_TRY(q->Exec());
    return db_.LastInsertRowid();
  }

  // An instance's workspace, journey, version, contact, entry time and trigger key are set when
  // it is inserted (a merge moves the contact); an update writes only what moves, so that the
  // indexes on the fixed columns are left alone, and the status (indexed) only when it changes.
  Status UpdateInstance(const Instance& i) override {
    {
      NUDGE_STMT(q,
                 "UPDATE journey_instances SET step = ?, step_since = ?, wake_at = ?, "
                 "updated_at = ?, data = ? WHERE id = ?");
      q->Bind(1, i.step).Bind(2, i.step_since);
      if (i.wake_at) {
        q->Bind(3, *i.wake_at);
      } else {
        q->Bind(3, std::optional<std::string>());
      }
      q->Bind(4, i.updated_at).Bind(5, i.data).Bind(6, i.id);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q, "UPDATE journey_instances SET status = ? WHERE id = ? AND status IS NOT ?");
    q->Bind(1, i.status).Bind(2, i.id).Bind(3, i.status);
    return q->Exec();
  }

  Status MoveInstances(ContactId from, ContactId into) override {
    NUDGE_STMT(q, "UPDATE journey_instances SET contact_id = ? WHERE contact_id = ?");
    q->Bind(1, into).Bind(2, from);
    NUDGE_TRY(q->Exec());
    NUDGE_STMT(m, "UPDATE messages SET contact_id = ? WHERE contact_id = ?");
    m->Bind(1, into).Bind(2, from);
    return m->Exec();
  }

  Status LogStep(const Instance& i, std::string_view step, std::string_view outcome,
                 Millis at) override {
    steps_.push_back({i.id, i.workspace, i.journey, std::string(step), std::string(outcome), at});
    return Status::Ok();
  }

  // Writes the step log entries of the current write: one row per instance, its entries in the
  // order they were logged; and counts them towards the group's per-step counts.
  Status FlushStepLog() {
    if (steps_.empty()) return Status::Ok();
    std::vector<StepEntry> entries = std::exchange(steps_, {});
    std::stable_sort(entries.begin(), entries.end(), [](const StepEntry& a, const StepEntry& b) {
      return a.instance < b.instance;
    });
    NUDGE_STMT(q, "INSERT INTO journey_step_log(instance_id, entries) VALUES(?, ?)");
    std::string json;
    for (size_t k = 0; k < entries.size();) {
      const int64_t instance = entries[k].instance;
      json.assign(1, '[');
      for (; k < entries.size() && entries[k].instance == instance; ++k) {
        const StepEntry& e = entries[k];
        if (json.size() > 1) json += ',';
        json += '[';
        core::AppendJsonString(json, e.step);
        json += ',';
        core::AppendJsonString(json, e.outcome);
        json += ',';
        json += std::to_string(e.at);
        json += ']';
        ++write_counts_[{e.ws, e.journey, e.step, e.outcome}];
      }
      json += ']';
      q->Reset();
      q->Bind(1, instance).Bind(2, json);
      NUDGE_TRY(q->Exec());
    }
    return Status::Ok();
  }

  // The current write is kept (its counts join the group's) or rolled back (its entries and
  // counts are dropped).
  void KeepWrite() {
    for (auto& [key, n] : write_counts_) group_counts_[key] += n;
    write_counts_.clear();
  }
  void DropWrite() {
    steps_.clear();
    write_counts_.clear();
  }

  // Adds the group's per-step counts, once per (workspace, journey, step, outcome), before its
  // commit.
  Status FlushStepCounts() {
    if (group_counts_.empty()) return Status::Ok();
    NUDGE_STMT(q,
               "INSERT INTO journey_step_counts(ws, journey, step, outcome, n) "
               "VALUES(?, ?, ?, ?, ?) ON CONFLICT(ws, journey, step, outcome) DO UPDATE SET "
               "n = n + excluded.n");
    for (const auto& [key, n] : group_counts_) {
      q->Reset();
      q->Bind(1, std::get<0>(key)).Bind(2, std::get<1>(key)).Bind(3, std::get<2>(key));
      q->Bind(4, std::get<3>(key)).Bind(5, n);
      NUDGE_TRY(q->Exec());
    }
    group_counts_.clear();
    return Status::Ok();
  }

  Result<bool> InsertMessage(Message& m) override {
    NUDGE_STMT(q,
               "INSERT INTO messages(ws, contact_id, journey, version, step, instance_id, "
               "channel, template, status, idempotency_key, payload, created_at, send_at, "
               "updated_at, detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT(ws, idempotency_key) DO NOTHING");
    q->Bind(1, m.workspace).Bind(2, m.contact).Bind(3, m.journey).Bind(4, m.version);
    q->Bind(5, m.step).Bind(6, m.instance).Bind(7, m.channel).Bind(8, m.template_id);
    q->Bind(9, m.status).Bind(10, m.idempotency_key).Bind(11, m.payload).Bind(12, m.created_at);
    q->Bind(13, m.send_at).Bind(14, m.updated_at).Bind(15, m.detail);
    NUDGE_TRY(q->Exec());
    if (db_.Changes() == 0) return false;
    m.id = db_.LastInsertRowid();
    return true;
  }

  Status UpdateMessageDelivery(const Message& m) override {
    NUDGE_STMT(q,
               "UPDATE messages SET status = ?, send_at = ?, updated_at = ?, detail = ?, "
               "attempts = ?, message_id_header = ?, recipient = ?, payload = ? WHERE id = ?");
    q->Bind(1, m.status).Bind(2, m.send_at).Bind(3, m.updated_at).Bind(4, m.detail);
    q->Bind(5, m.attempts);
    q->Bind(6, m.message_id_header.empty() ? std::optional<std::string>() : m.message_id_header);
    q->Bind(7, m.recipient.empty() ? std::optional<std::string>() : m.recipient);
    q->Bind(8, m.payload).Bind(9, m.id);
    return q->Exec();
  }

  Status SetSubscription(const ConsentRecord& r) override {
    const Subscription& s = r.subscription;
    {
      NUDGE_STMT(q,
                 "INSERT OR REPLACE INTO subscriptions(ws, contact_id, channel, topic, status, "
                 "updated_at) VALUES(?, ?, ?, ?, ?, ?)");
      q->Bind(1, s.workspace).Bind(2, s.contact).Bind(3, s.channel).Bind(4, s.topic);
      q->Bind(5, s.status).Bind(6, s.updated_at);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q,
               "INSERT INTO consent_log(ws, contact_id, channel, topic, status, at, source, ip, "
               "detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)");
    q->Bind(1, s.workspace).Bind(2, s.contact).Bind(3, s.channel).Bind(4, s.topic);
    q->Bind(5, s.status).Bind(6, s.updated_at).Bind(7, r.source);
    q->Bind(8, r.ip.empty() ? std::optional<std::string>() : r.ip);
    q->Bind(9, r.detail.empty() ? std::optional<std::string>() : r.detail);
    return q->Exec();
  }

  Status AddSuppression(const Suppression& s) override {
    NUDGE_STMT(q,
               "INSERT INTO suppressions(ws, channel, address, reason, created_at, detail) "
               "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(ws, channel, address) DO UPDATE SET "
               // An unsubscribe never weakens a bounce, complaint or manual entry (those stop
               // transactional mail too).
               "reason = CASE WHEN excluded.reason = 'unsubscribed' AND "
               "suppressions.reason <> 'unsubscribed' THEN suppressions.reason "
               "ELSE excluded.reason END, "
               "detail = CASE WHEN excluded.reason = 'unsubscribed' AND "
               "suppressions.reason <> 'unsubscribed' THEN suppressions.detail "
               "ELSE excluded.detail END");
    q->Bind(1, s.workspace).Bind(2, s.channel).Bind(3, s.address).Bind(4, s.reason);
    q->Bind(5, s.created_at).Bind(6, s.detail);
    return q->Exec();
  }

  Result<bool> RemoveSuppression(WorkspaceId ws, std::string_view channel,
                                 std::string_view address) override {
    NUDGE_STMT(q, "DELETE FROM suppressions WHERE ws = ? AND channel = ? AND address = ?");
    q->Bind(1, ws).Bind(2, channel).Bind(3, address);
    NUDGE_TRY(q->Exec());
    return db_.Changes() > 0;
  }

  Status PutSecret(WorkspaceId ws, std::string_view name, std::string_view value) override {
    NUDGE_STMT(q, "INSERT OR REPLACE INTO secrets(ws, name, value) VALUES(?, ?, ?)");
    q->Bind(1, ws).Bind(2, name).Bind(3, value);
    return q->Exec();
  }

  Status SetMark(std::string_view name, int64_t value) override {
    NUDGE_STMT(q, "INSERT OR REPLACE INTO marks(name, value) VALUES(?, ?)");
    q->Bind(1, name).Bind(2, value);
    return q->Exec();
  }

  Result<int64_t> CountBounce(ContactId id, bool hard, Millis at) override {
    {
      NUDGE_STMT(q,
                 "INSERT INTO bounce_counts(contact_id, soft, hard, updated_at) VALUES(?, ?, ?, ?) "
                 "ON CONFLICT(contact_id) DO UPDATE SET soft = soft + excluded.soft, "
                 "hard = hard + excluded.hard, updated_at = excluded.updated_at");
      q->Bind(1, id).Bind(2, int64_t{hard ? 0 : 1}).Bind(3, int64_t{hard ? 1 : 0}).Bind(4, at);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q, "SELECT soft FROM bounce_counts WHERE contact_id = ?");
    q->Bind(1, id);
    auto row = q->Step();
    if (!row) return Err(row.error());
    return q->Int(0);
  }

  Result<bool> UpdateMessageStatusIf(int64_t id, std::string_view from, std::string_view status,
                                     Millis now, std::string_view detail) override {
    NUDGE_STMT(q,
               "UPDATE messages SET status = ?, updated_at = ?, detail = ? WHERE id = ? AND "
               "status = ?");
    q->Bind(1, status).Bind(2, now).Bind(3, detail).Bind(4, id).Bind(5, from);
    NUDGE_TRY(q->Exec());
    return db_.Changes() > 0;
  }

  Result<int64_t> RequeueSending(Millis now) override {
    NUDGE_STMT(q,
               "UPDATE messages SET status = 'queued', updated_at = ?, detail = 'sent again after "
               "a restart: the outcome of the earlier attempt is unknown' WHERE status = "
               "'sending'");
    q->Bind(1, now);
    NUDGE_TRY(q->Exec());
    return static_cast<int64_t>(db_.Changes());
  }

  Status UpdateMessageStatus(int64_t id, std::string_view status, Millis now,
                             std::string_view detail) override {
    NUDGE_STMT(q, "UPDATE messages SET status = ?, updated_at = ?, detail = ? WHERE id = ?");
    q->Bind(1, status).Bind(2, now).Bind(3, detail).Bind(4, id);
    return q->Exec();
  }

  // ---- writes ----

  Result<int64_t> PutDefinition(WorkspaceId ws, std::string_view kind, std::string_view id,
                                std::string_view body, Millis now) override {
    NUDGE_ASSIGN_OR_RETURN(auto existing, GetDefinition(ws, kind, id));
    if (existing && existing->body == body) return existing->version;
    const int64_t version = existing ? existing->version + 1 : 1;
    NUDGE_STMT(q,
               "INSERT INTO definitions(ws, kind, id, version, body, created_at, updated_at) "
               "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ws, kind, id) DO UPDATE SET "
               "version = excluded.version, body = excluded.body, "
               "updated_at = excluded.updated_at");
    q->Bind(1, ws).Bind(2, kind).Bind(3, id).Bind(4, version).Bind(5, body);
    q->Bind(6, existing ? existing->created_at : now).Bind(7, now);
    NUDGE_TRY(q->Exec());
    return version;
  }

  Result<bool> DeleteDefinition(WorkspaceId ws, std::string_view kind,
                                std::string_view id) override {
    NUDGE_STMT(q, "DELETE FROM definitions WHERE ws = ? AND kind = ? AND id = ?");
    q->Bind(1, ws).Bind(2, kind).Bind(3, id);
    NUDGE_TRY(q->Exec());
    return db_.Changes() > 0;
  }

  Status AddSegmentMember(const SegmentMember& m) override {
    NUDGE_STMT(q,
               "INSERT OR REPLACE INTO segment_members(ws, segment, contact_id, since) "
               "VALUES(?, ?, ?, ?)");
    q->Bind(1, m.workspace).Bind(2, m.segment).Bind(3, m.contact).Bind(4, m.since);
    return q->Exec();
  }

  Status RemoveSegmentMember(WorkspaceId ws, std::string_view segment, ContactId id) override {
    NUDGE_STMT(q, "DELETE FROM segment_members WHERE ws = ? AND segment = ? AND contact_id = ?");
    q->Bind(1, ws).Bind(2, segment).Bind(3, id);
    return q->Exec();
  }

  Status ClearSegment(WorkspaceId ws, std::string_view segment) override {
    NUDGE_STMT(q, "DELETE FROM segment_members WHERE ws = ? AND segment = ?");
    q->Bind(1, ws).Bind(2, segment);
    return q->Exec();
  }

  Status SetContactStage(const StageEntry& e) override {
    {
      NUDGE_STMT(q,
                 "INSERT OR REPLACE INTO contact_stages(contact_id, stage, since) "
                 "VALUES(?, ?, ?)");
      q->Bind(1, e.contact).Bind(2, e.stage).Bind(3, e.at);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q, "INSERT INTO stage_history(contact_id, stage, previous, at) VALUES(?, ?, ?, ?)");
    q->Bind(1, e.contact).Bind(2, e.stage);
    if (e.previous.empty()) {
      q->Bind(3, std::optional<std::string>());
    } else {
      q->Bind(3, e.previous);
    }
    q->Bind(4, e.at);
    return q->Exec();
  }

  Result<WorkspaceId> InsertWorkspace(const Workspace& ws) override {
    NUDGE_STMT(q,
               "INSERT INTO workspaces(name, write_key_hash, admin_key_hash, created_at) "
               "VALUES(?, ?, ?, ?)");
    q->Bind(1, ws.name)
        .Bind(2, ws.write_key_hash)
        .Bind(3, ws.admin_key_hash)
        .Bind(4, ws.created_at);
    Status s = q->Exec();
    if (!s.ok()) {
      if (sqlite3_extended_errcode(db_.raw()) == SQLITE_CONSTRAINT_UNIQUE)
        return Err(Status(Code::kAlreadyExists, "a workspace named '" + ws.name + "' exists"));
      return Err(s);
    }
    return db_.LastInsertRowid();
  }

  Status UpdateWorkspaceKeys(WorkspaceId id, std::string_view write_key_hash,
                             std::string_view admin_key_hash) override {
    NUDGE_STMT(q, "UPDATE workspaces SET write_key_hash = ?, admin_key_hash = ? WHERE id = ?");
    q->Bind(1, write_key_hash).Bind(2, admin_key_hash).Bind(3, id);
    return q->Exec();
  }

  Result<ContactId> InsertContact(const Contact& c) override {
    NUDGE_STMT(q,
               "INSERT INTO contacts(ws, user_id, email, phone, traits, tags, source, "
               "import_id, created_at, last_seen_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    q->Bind(1, c.workspace).Bind(2, c.user_id).Bind(3, c.email).Bind(4, c.phone);
    q->Bind(5, c.traits).Bind(6, c.tags).Bind(7, c.source).Bind(8, c.import_id);
    q->Bind(9, c.created_at).Bind(10, c.last_seen_at);
    Status s = q->Exec();
    if (!s.ok()) return Err(s);
    return db_.LastInsertRowid();
  }

  Status UpdateContact(const Contact& c) override {
    NUDGE_STMT(q,
               "UPDATE contacts SET user_id = ?, email = ?, phone = ?, traits = ?, tags = ?, "
               "source = ?, import_id = ?, created_at = ?, last_seen_at = ? WHERE id = ?");
    q->Bind(1, c.user_id).Bind(2, c.email).Bind(3, c.phone).Bind(4, c.traits).Bind(5, c.tags);
    q->Bind(6, c.source).Bind(7, c.import_id).Bind(8, c.created_at).Bind(9, c.last_seen_at);
    q->Bind(10, c.id);
    return q->Exec();
  }

  Status DeleteContact(ContactId id) override {
    erased_ = true;
    {
      NUDGE_STMT(q, "DELETE FROM events WHERE contact_id = ?");
      q->Bind(1, id);
      NUDGE_TRY(q->Exec());
    }
    {
      NUDGE_STMT(q, "DELETE FROM identities WHERE contact_id = ?");
      q->Bind(1, id);
      NUDGE_TRY(q->Exec());
    }
    {
      NUDGE_STMT(q, "DELETE FROM contact_merges WHERE into_id = ? OR from_id = ?");
      q->Bind(1, id).Bind(2, id);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_TRY(ForgetContactState(id));
    // Erasure takes the journeys' record of the person (instances and their step log) and the
    // messages to them too; the anonymous step counts stay.
    for (const char* sql : {"DELETE FROM journey_step_log WHERE instance_id IN "
                            "(SELECT id FROM journey_instances WHERE contact_id = ?)",
                            "DELETE FROM journey_instances WHERE contact_id = ?",
                            "DELETE FROM messages WHERE contact_id = ?",
                            "DELETE FROM subscriptions WHERE contact_id = ?",
                            "DELETE FROM consent_log WHERE contact_id = ?",
                            "DELETE FROM bounce_counts WHERE contact_id = ?"}) {
      auto stmt = db_.Prepare(sql);
      if (!stmt) return stmt.error();
      StmtUse q(**stmt);
      q->Bind(1, id);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q, "DELETE FROM contacts WHERE id = ?");
    q->Bind(1, id);
    return q->Exec();
  }

  Status LinkIdentity(WorkspaceId ws, IdentityKind kind, std::string_view value,
                      ContactId id) override {
    NUDGE_STMT(q,
               "INSERT INTO identities(ws, kind, value, contact_id) VALUES(?, ?, ?, ?) "
               "ON CONFLICT(ws, kind, value) DO UPDATE SET contact_id = excluded.contact_id");
    q->Bind(1, ws).Bind(2, IdentityKindName(kind)).Bind(3, value).Bind(4, id);
    return q->Exec();
  }

  Status MergeContacts(ContactId from, ContactId into, Millis at) override {
    NUDGE_TRY(ForgetContactState(from));  // the survivor's memberships and stage are re-derived
    // Consent moves with the person (the survivor's own choices win on conflict).
    for (const char* sql :
         {"UPDATE OR IGNORE subscriptions SET contact_id = ?2 WHERE contact_id = ?1",
          "DELETE FROM subscriptions WHERE contact_id = ?1",
          "UPDATE consent_log SET contact_id = ?2 WHERE contact_id = ?1"}) {
      auto stmt = db_.Prepare(sql);
      if (!stmt) return stmt.error();
      StmtUse q(**stmt);
      q->Bind(1, from).Bind(2, into);
      NUDGE_TRY(q->Exec());
    }
    {
      NUDGE_STMT(q, "UPDATE events SET contact_id = ? WHERE contact_id = ?");
      q->Bind(1, into).Bind(2, from);
      NUDGE_TRY(q->Exec());
    }
    {
      NUDGE_STMT(q, "UPDATE identities SET contact_id = ? WHERE contact_id = ?");
      q->Bind(1, into).Bind(2, from);
      NUDGE_TRY(q->Exec());
    }
    {
      NUDGE_STMT(q,
                 "INSERT INTO contact_merges(ws, from_id, into_id, at) "
                 "SELECT ws, id, ?, ? FROM contacts WHERE id = ?");
      q->Bind(1, into).Bind(2, at).Bind(3, from);
      NUDGE_TRY(q->Exec());
    }
    NUDGE_STMT(q, "DELETE FROM contacts WHERE id = ?");
    q->Bind(1, from);
    return q->Exec();
  }

  Result<bool> InsertEvent(Event& e) override {
    NUDGE_STMT(q,
               "INSERT INTO events(ws, contact_id, message_id, type, name, timestamp, "
               "received_at, body) VALUES(?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT(ws, message_id) WHERE " NUDGE_CHECKED_MESSAGE_ID " DO NOTHING");
    q->Bind(1, e.workspace).Bind(2, e.contact).Bind(3, e.message_id).Bind(4, e.type);
    q->Bind(5, e.name).Bind(6, e.timestamp).Bind(7, e.received_at).Bind(8, e.body);
    NUDGE_TRY(q->Exec());
    if (db_.Changes() == 0) return false;
    e.id = db_.LastInsertRowid();
    return true;
  }

  void OnCommit(std::function<void()> fn) override { on_commit_.push_back(std::move(fn)); }
  void OnRollback(std::function<void()> fn) override { on_rollback_.push_back(std::move(fn)); }

  // Hooks registered by the current write; the writer keeps or drops them with its savepoint.
  std::vector<std::function<void()>> TakeOnCommit() { return std::exchange(on_commit_, {}); }
  // Whether a write of the transaction erased a contact (its log is then purged once
  // committed).
  bool TakeErased() { return std::exchange(erased_, false); }
  std::vector<std::function<void()>> TakeOnRollback() { return std::exchange(on_rollback_, {}); }

 private:
  static void BindInstance(Stmt& q, const Instance& i) {
    q.Bind(1, i.workspace).Bind(2, i.journey).Bind(3, i.version).Bind(4, i.contact);
    q.Bind(5, i.status).Bind(6, i.step).Bind(7, i.step_since);
    if (i.wake_at) {
      q.Bind(8, *i.wake_at);
    } else {
      q.Bind(8, std::optional<std::string>());
    }
    q.Bind(9, i.entered_at).Bind(10, i.updated_at).Bind(11, i.trigger_key).Bind(12, i.data);
  }

  // A contact's segment memberships and stage rows go with it.
  Status ForgetContactState(ContactId id) {
    for (const char* sql : {"DELETE FROM segment_members WHERE contact_id = ?",
                            "DELETE FROM contact_stages WHERE contact_id = ?",
                            "DELETE FROM stage_history WHERE contact_id = ?"}) {
      auto stmt = db_.Prepare(sql);
      if (!stmt) return stmt.error();
      StmtUse q(**stmt);
      q->Bind(1, id);
      NUDGE_TRY(q->Exec());
    }
    return Status::Ok();
  }

  struct StepEntry {
    int64_t instance;
    WorkspaceId ws;
    std::string journey, step, outcome;
    Millis at;
  };
  using CountKey = std::tuple<WorkspaceId, std::string, std::string, std::string>;

  Db& db_;
  std::vector<std::function<void()>> on_commit_;
  bool erased_ = false;
  std::vector<std::function<void()>> on_rollback_;
  std::vector<StepEntry> steps_;              // logged by the current write
  std::map<CountKey, int64_t> write_counts_;  // of the current write's flushed entries
  std::map<CountKey, int64_t> group_counts_;  // of the kept writes, not yet written
};

#undef NUDGE_STMT
#undef NUDGE_CHECKED_MESSAGE_ID

struct PendingWrite {
  Store::WriteFn fn;
  Store::DoneFn done;
  Store::Isolation isolation = Store::Isolation::kAlone;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(SqliteOptions options, std::unique_ptr<Db> writer,
              std::unique_ptr<Checkpointer> checkpointer)
      : options_(std::move(options)),
        writer_db_(std::move(writer)),
        checkpointer_(std::move(checkpointer)) {
    if (options_.metrics) {
      checkpointer_->AddMetrics(*options_.metrics, "nudge_store", "store");
      commit_latency_ = &options_.metrics->GetHistogram(
          "nudge_store_commit_seconds", "Time to commit one group of writes, fsync included.",
          {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1});
      group_size_ = &options_.metrics->GetHistogram("nudge_store_commit_group_writes",
                                                    "Writes committed together in one transaction.",
                                                    {1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
      options_.metrics->AddGauge("nudge_queue_depth", "Work waiting in a queue.",
                                 "{queue=\"store_writer\"}",
                                 [this] { return static_cast<double>(Stats().queued_writes); });
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "store-writer");
      WriterLoop();
    });
  }

  ~SqliteStore() override { Close(); }

  using Store::Write;
  void Write(WriteFn fn, DoneFn done, Isolation isolation) override {
    {
      std::lock_guard lock(mutex_);
      if (!closing_) {
        queue_.push_back({std::move(fn), std::move(done), isolation});
        cv_.notify_one();
        return;
      }
    }
    done(Status::Unavailable("the store is shutting down"));
  }

  Status Read(const std::function<Status(ReadTxn&)>& fn) override {
    std::unique_ptr<Db> db;
    {
      std::lock_guard lock(readers_mutex_);
      if (!readers_.empty()) {
        db = std::move(readers_.back());
        readers_.pop_back();
      }
    }
    if (!db) {
      auto opened = OpenReader();
      if (!opened) return opened.error();
      db = std::move(*opened);
    }
    Status status = db->Run("BEGIN");
    if (status.ok()) {
      Txn txn(*db);
      status = fn(txn);
      Status end = db->Run("COMMIT");
      if (status.ok()) status = end;
    }
    std::lock_guard lock(readers_mutex_);
    if (static_cast<int>(readers_.size()) < options_.read_connections)
      readers_.push_back(std::move(db));
    return status;
  }

  void Close() override {
    {
      std::lock_guard lock(mutex_);
      if (closing_) {
        // Another caller closed already; still wait for the thread to finish.
      }
      closing_ = true;
      cv_.notify_all();
    }
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
    checkpointer_->Stop();
  }

  StoreStats Stats() const override {
    std::lock_guard lock(mutex_);
    return {queue_.size(), commits_, writes_committed_};
  }

 private:
  Result<std::unique_ptr<Db>> OpenReader() {
    NUDGE_ASSIGN_OR_RETURN(auto db, Db::Open(options_.path, /*read_only=*/true));
    NUDGE_TRY(db->Exec("PRAGMA query_only = ON; PRAGMA cache_size = -16384;"));
    return db;
  }

  void WriterLoop() {
    Db& db = *writer_db_;
    for (;;) {
      std::vector<PendingWrite> group;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
        if (queue_.empty() && closing_) return;
        // A group is a run of writes of one isolation, in order.
        const size_t n =
            std::min(queue_.size(), static_cast<size_t>(options_.max_writes_per_commit));
        const Isolation isolation = queue_.front().isolation;
        group.reserve(n);
        for (size_t i = 0; i < n && queue_.front().isolation == isolation; ++i) {
          group.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      checkpointer_->BeforeWrite();
      CommitGroup(db, group);
    }
  }

  void CommitGroup(Db& db, std::vector<PendingWrite>& group) {
    const int64_t start = core::MonotonicMicros();
    std::vector<Status> results(group.size());
    std::vector<std::function<void()>> hooks;
    Status begin = db.Run("BEGIN IMMEDIATE");
    if (!begin.ok()) {
      for (auto& w : group) w.done(begin);
      return;
    }
    Txn txn(db);
    std::vector<std::function<void()>> undo;  // of the writes kept so far, if the commit fails
    const bool alone = group.front().isolation == Isolation::kAlone;
    for (size_t i = 0; i < group.size(); ++i) {
      Status s = alone ? db.Run("SAVEPOINT w") : Status::Ok();
      if (s.ok()) s = group[i].fn(txn);
      if (s.ok()) s = txn.FlushStepLog();
      auto write_hooks = txn.TakeOnCommit();
      auto write_undo = txn.TakeOnRollback();
      if (s.ok() && alone) s = db.Run("RELEASE w");
      if (s.ok()) {
        txn.KeepWrite();
        for (auto& h : write_hooks) hooks.push_back(std::move(h));
        for (auto& u : write_undo) undo.push_back(std::move(u));
      } else if (alone) {
        txn.DropWrite();
        (void)db.Run("ROLLBACK TO w");
        (void)db.Run("RELEASE w");
        for (auto it = write_undo.rbegin(); it != write_undo.rend(); ++it) (*it)();
      } else {
        // The group goes with it: nothing of it is kept, nothing after it runs.
        for (auto& u : write_undo) undo.push_back(std::move(u));
        (void)db.Run("ROLLBACK");
        for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
        const Status others = Status::Unavailable("rolled back with a failed write of its group (" +
                                                  s.ToString() + ")");
        for (size_t k = 0; k < group.size(); ++k) group[k].done(k == i ? s : others);
        return;
      }
      results[i] = std::move(s);
    }
    Status commit = txn.FlushStepCounts();
    if (commit.ok()) commit = db.Run("COMMIT");
    if (!commit.ok()) {
      (void)db.Run("ROLLBACK");
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) (*it)();
      for (auto& w : group) w.done(commit);
      return;
    }
    for (auto& h : hooks) h();
    // An erasure is answered once no older copy of the erased rows is left in the log either.
    if (txn.TakeErased()) checkpointer_->PurgeLog();
    const double seconds = static_cast<double>(core::MonotonicMicros() - start) / 1e6;
    if (commit_latency_) commit_latency_->Observe(seconds);
    if (group_size_) group_size_->Observe(static_cast<double>(group.size()));
    {
      std::lock_guard lock(mutex_);
      ++commits_;
      writes_committed_ += group.size();
    }
    for (size_t i = 0; i < group.size(); ++i) group[i].done(std::move(results[i]));
  }

  SqliteOptions options_;
  std::unique_ptr<Db> writer_db_;  // used by the writer thread only
  std::unique_ptr<Checkpointer> checkpointer_;
  core::Histogram* commit_latency_ = nullptr;
  core::Histogram* group_size_ = nullptr;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<PendingWrite> queue_;  // GUARDED_BY(mutex_)
  bool closing_ = false;            // GUARDED_BY(mutex_)
  uint64_t commits_ = 0;            // GUARDED_BY(mutex_)
  uint64_t writes_committed_ = 0;   // GUARDED_BY(mutex_)

  std::mutex join_mutex_;
  std::thread thread_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<Db>> readers_;  // GUARDED_BY(readers_mutex_)
};

}  // namespace
}  // namespace sqlite

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  NUDGE_ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(options.path, /*read_only=*/false));
  NUDGE_TRY(db->Exec("PRAGMA journal_mode = WAL"));
  NUDGE_TRY(db->Exec("PRAGMA synchronous = FULL"));
  NUDGE_TRY(db->Exec("PRAGMA cache_size = -65536"));
  NUDGE_TRY(db->Exec("PRAGMA temp_store = MEMORY"));
  // An erased contact's bytes are overwritten with zeros in the file (GDPR erasure), pages put
  // on the free list too. Debian's SQLite does it by default; said here so that another build
  // does it as well.
  NUDGE_TRY(db->Exec("PRAGMA secure_delete = ON"));
  NUDGE_TRY(sqlite::Migrate(*db));
  NUDGE_ASSIGN_OR_RETURN(auto checkpointer, sqlite::Checkpointer::Attach(options.path, *db));
  return std::unique_ptr<Store>(
      new sqlite::SqliteStore(options, std::move(db), std::move(checkpointer)));
}

}  // namespace nudge::store
