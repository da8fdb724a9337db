#include "profile/applier.h"

#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "profile/normalize.h"
#include "profile/traits.h"

namespace nudge::profile {
namespace {

using core::Millis;
using ingest::Message;
using ingest::MessageType;
using store::Contact;
using store::ContactId;
using store::IdentityKind;
using store::WorkspaceId;
using store::WriteTxn;

// The state of one Apply call: contacts read so far and what changed, written back at the end.
class Session {
 public:
  Session(WriteTxn& txn, WorkspaceId ws, const ProfileOptions& options, ContactObserver* observer,
          ApplyResult& result)
      : txn_(txn), ws_(ws), options_(options), observer_(observer), result_(result) {}

  Status ApplyOne(const Message& m) {
    // A repeated message changes nothing. Finding the ids it names changes nothing either, so
    // most repeats are found by the insert itself (one index probe), before the traits; one
    // that would change identities (create a contact, link an id, merge two) asks the store
    // before its first change (Repeated), since a repeat need not name the same ids.
    current_ = &m;
    probed_ = repeated_ = false;
    ContactId id = 0;
    if (m.type == MessageType::kAlias) {
      NUDGE_ASSIGN_OR_RETURN(id, ResolveAlias(*m.user_id, m.previous_id, m.timestamp));
    } else {
      NUDGE_ASSIGN_OR_RETURN(id, Resolve(m.user_id, m.anonymous_id, m.timestamp));
    }
    if (repeated_) {
      ++result_.duplicates;
      return Status::Ok();
    }
    // Storing the event takes a few microseconds: time for the contact's state to arrive.
    if (observer_) observer_->Prefetch(id);
    store::Event e{0,
                   ws_,
                   id,
                   m.message_id,
                   std::string(ingest::MessageTypeName(m.type)),
                   m.event,
                   m.timestamp,
                   m.received_at,
                   m.body};
    NUDGE_ASSIGN_OR_RETURN(bool inserted, txn_.InsertEvent(e));
    if (!inserted) {
      ++result_.duplicates;
      return Status::Ok();
    }
    if (m.type == MessageType::kIdentify && !m.traits.empty()) {
      NUDGE_ASSIGN_OR_RETURN(id, ApplyTraits(id, m.traits, m.timestamp));
      e.contact = id;
    }
    ++result_.accepted;
    result_.events.push_back({e.id, id, &m});
    return Tell([&](ContactObserver& o) { return o.OnEvent(txn_, e); });
  }

  // Writes back the contacts this call changed.
  Status Flush() {
    for (auto& [id, contact] : loaded_) {
      if (!dirty_.count(id)) continue;
      NUDGE_TRY(txn_.UpdateContact(contact));
    }
    dirty_.clear();
    return Status::Ok();
  }

 private:
  bool IsGone(ContactId id) const { return merged_away_.count(id) > 0; }

  // Calls the observer, when there is one. It may read and write contact rows (a journey's
  // update step sets traits and tags): it finds this call's changes in the store, and what
  // this call read of contacts before it is read again after it. Pointers from Load do not
  // outlive a Tell.
  template <typename Call>  // Status(ContactObserver&)
  Status Tell(Call&& call) {
    if (!observer_) return Status::Ok();
    NUDGE_TRY(Flush());
    NUDGE_TRY(call(*observer_));
    loaded_.clear();
    return Status::Ok();
  }

  // Whether the current message's id is stored already; asked once, before the message's
  // first change to identities.
  Result<bool> Repeated() {
    if (!probed_) {
      NUDGE_ASSIGN_OR_RETURN(repeated_, txn_.HasMessage(ws_, current_->message_id));
      probed_ = true;
    }
    return repeated_;
  }

  Result<Contact*> Load(ContactId id) {
    auto it = loaded_.find(id);
    if (it != loaded_.end()) return &it->second;
    NUDGE_ASSIGN_OR_RETURN(auto c, txn_.GetContact(id));
    if (!c) return Err(Status::Internal("contact " + std::to_string(id) + " vanished"));
    return &loaded_.emplace(id, std::move(*c)).first->second;
  }

  Result<std::optional<ContactId>> FindUser(const std::string& user_id) {
    auto it = users_.find(user_id);
    if (it != users_.end()) return std::optional<ContactId>(it->second);
    NUDGE_ASSIGN_OR_RETURN(auto id, txn_.FindContactIdByUserId(ws_, user_id));
    if (id) users_[user_id] = *id;
    return id;
  }

  Result<std::optional<ContactId>> FindAnon(const std::string& anon) {
    auto it = anons_.find(anon);
    if (it != anons_.end()) return std::optional<ContactId>(it->second);
    NUDGE_ASSIGN_OR_RETURN(auto id, txn_.FindContactByAnonymousId(ws_, anon));
    if (id) anons_[anon] = *id;
    return id;
  }

  Status Link(IdentityKind kind, const std::string& value, ContactId id) {
    NUDGE_TRY(txn_.LinkIdentity(ws_, kind, value, id));
    if (kind == IdentityKind::kAnonymous) anons_[value] = id;
    if (kind == IdentityKind::kAlias) users_[value] = id;
    return Status::Ok();
  }

  Result<ContactId> Create(const std::optional<std::string>& user_id, Millis at) {
    Contact c;
    c.workspace = ws_;
    c.user_id = user_id;
    c.created_at = at;
    c.last_seen_at = at;
    NUDGE_ASSIGN_OR_RETURN(c.id, txn_.InsertContact(c));
    ++result_.contacts_created;
    if (user_id) users_[*user_id] = c.id;
    const ContactId id = c.id;
    NUDGE_TRY(Tell([&](ContactObserver& o) { return o.OnContactCreated(txn_, c); }));
    if (!observer_) loaded_.emplace(id, std::move(c));  // else read again when needed
    return id;
  }

  // Folds contact `from` into `into`: history, identities and fields.
  Status Merge(ContactId from, ContactId into, Millis at) {
    NUDGE_ASSIGN_OR_RETURN(Contact * src, Load(from));
    NUDGE_ASSIGN_OR_RETURN(Contact * dst, Load(into));
    const std::optional<std::string> from_user = src->user_id;
    NUDGE_TRY(MergeContactFields(*dst, *src));
    const std::optional<std::string> into_user = dst->user_id;
    dirty_.insert(into);
    NUDGE_TRY(txn_.MergeContacts(from, into, at));
    merged_away_.insert(from);
    loaded_.erase(from);
    dirty_.erase(from);
    NUDGE_TRY(Tell([&](ContactObserver& o) -> Status {
      NUDGE_TRY(o.OnContactsMerged(txn_, from, into));
      return o.OnContactChanged(txn_, *dst, "");
    }));
    // A user id that loses its contact keeps leading to the survivor.
    if (from_user && from_user != into_user)
      NUDGE_TRY(Link(IdentityKind::kAlias, *from_user, into));
    for (auto& [k, v] : users_)
      if (v == from) v = into;
    for (auto& [k, v] : anons_)
      if (v == from) v = into;
    ++result_.contacts_merged;
    return Status::Ok();
  }

  Result<ContactId> Resolve(const std::optional<std::string>& user_id,
                            const std::optional<std::string>& anon, Millis at) {
    std::optional<ContactId> by_anon;
    if (anon) {
      NUDGE_ASSIGN_OR_RETURN(by_anon, FindAnon(*anon));
    }
    if (!user_id) {
      if (by_anon) return *by_anon;
      NUDGE_ASSIGN_OR_RETURN(bool repeated, Repeated());
      if (repeated) return ContactId{0};
      NUDGE_ASSIGN_OR_RETURN(ContactId id, Create(std::nullopt, at));
      NUDGE_TRY(Link(IdentityKind::kAnonymous, *anon, id));
      return id;
    }
    NUDGE_ASSIGN_OR_RETURN(auto by_user, FindUser(*user_id));
    if (by_user) {
      if (anon && by_anon != by_user) {
        NUDGE_ASSIGN_OR_RETURN(bool repeated, Repeated());
        if (repeated) return ContactId{0};
        bool merge = false;
        if (by_anon) {
          NUDGE_ASSIGN_OR_RETURN(Contact * a, Load(*by_anon));
          merge = !a->user_id;  // an anonymous visitor becomes this known contact
        }
        if (merge) {
          NUDGE_TRY(Merge(*by_anon, *by_user, at));
        } else {
          // A device another known user used before: the id now leads here; their history
          // stays theirs.
          NUDGE_TRY(Link(IdentityKind::kAnonymous, *anon, *by_user));
        }
      }
      return *by_user;
    }
    NUDGE_ASSIGN_OR_RETURN(bool repeated, Repeated());
    if (repeated) return ContactId{0};
    if (by_anon) {
      NUDGE_ASSIGN_OR_RETURN(Contact * a, Load(*by_anon));
      if (!a->user_id) {  // the visitor identifies: the same contact gains its user id
        a->user_id = user_id;
        dirty_.insert(a->id);
        users_[*user_id] = a->id;
        return a->id;
      }
    }
    NUDGE_ASSIGN_OR_RETURN(ContactId id, Create(user_id, at));
    if (anon) NUDGE_TRY(Link(IdentityKind::kAnonymous, *anon, id));
    return id;
  }

  // alias: previous_id (an anonymous id or an earlier user id) now means user_id.
  Result<ContactId> ResolveAlias(const std::string& user_id, const std::string& previous_id,
                                 Millis at) {
    NUDGE_ASSIGN_OR_RETURN(bool repeated, Repeated());  // an alias always links an id
    if (repeated) return ContactId{0};
    NUDGE_ASSIGN_OR_RETURN(auto by_user, FindUser(user_id));
    NUDGE_ASSIGN_OR_RETURN(auto by_prev, FindUser(previous_id));
    if (!by_prev) {
      NUDGE_ASSIGN_OR_RETURN(by_prev, FindAnon(previous_id));
    }
    ContactId target;
    if (by_user && by_prev && *by_user != *by_prev) {
      NUDGE_TRY(Merge(*by_prev, *by_user, at));
      target = *by_user;
    } else if (by_user) {
      target = *by_user;
    } else if (by_prev) {
      NUDGE_ASSIGN_OR_RETURN(Contact * c, Load(*by_prev));
      if (c->user_id && *c->user_id != user_id)
        NUDGE_TRY(Link(IdentityKind::kAlias, *c->user_id, c->id));
      c->user_id = user_id;
      dirty_.insert(c->id);
      users_[user_id] = c->id;
      target = c->id;
    } else {
      NUDGE_ASSIGN_OR_RETURN(target, Create(user_id, at));
    }
    // The previous id keeps leading here, whether later calls use it as either kind of id.
    NUDGE_TRY(Link(IdentityKind::kAnonymous, previous_id, target));
    if (previous_id != user_id) NUDGE_TRY(Link(IdentityKind::kAlias, previous_id, target));
    return target;
  }

  // Merges identify traits; adopts a user-less contact with the same email. Returns the
  // contact the traits ended on.
  Result<ContactId> ApplyTraits(ContactId id, const std::string& traits, Millis at) {
    NUDGE_ASSIGN_OR_RETURN(Contact * c, Load(id));
    NUDGE_ASSIGN_OR_RETURN(c->traits, MergeTraits(c->traits, traits));
    const std::optional<std::string> old_email = c->email;
    DeriveContactFields(*c, options_);
    dirty_.insert(id);
    NUDGE_TRY(Tell([&](ContactObserver& o) { return o.OnContactChanged(txn_, *c, ""); }));
    NUDGE_ASSIGN_OR_RETURN(c, Load(id));
    if (c->user_id && c->email && c->email != old_email) {
      NUDGE_ASSIGN_OR_RETURN(auto twin, txn_.FindContactByEmail(ws_, *c->email));
      if (twin && twin->id != id && !twin->user_id && !IsGone(twin->id)) {
        if (!loaded_.count(twin->id)) loaded_.emplace(twin->id, std::move(*twin));
        NUDGE_TRY(Merge(twin->id, id, at));
      }
    }
    return id;
  }

  WriteTxn& txn_;
  const WorkspaceId ws_;
  const ProfileOptions& options_;
  ContactObserver* observer_;
  ApplyResult& result_;
  std::unordered_map<ContactId, Contact> loaded_;
  std::unordered_set<ContactId> dirty_;
  std::unordered_set<ContactId> merged_away_;
  std::unordered_map<std::string, ContactId> users_;
  std::unordered_map<std::string, ContactId> anons_;
  const Message* current_ = nullptr;
  bool probed_ = false, repeated_ = false;
};

}  // namespace

Result<ApplyResult> Applier::Apply(WriteTxn& txn, WorkspaceId ws,
                                   const std::vector<Message>& messages) const {
  ApplyResult result;
  result.events.reserve(messages.size());
  Session session(txn, ws, options_, observer_, result);
  for (const Message& m : messages) NUDGE_TRY(session.ApplyOne(m));
  NUDGE_TRY(session.Flush());
  return result;
}

void DeriveContactFields(Contact& contact, const ProfileOptions& options) {
  const auto traits = nlohmann::json::parse(contact.traits, nullptr, false);
  contact.email.reset();
  contact.phone.reset();
  if (!traits.is_object()) return;
  if (auto it = traits.find("email"); it != traits.end() && it->is_string()) {
    if (auto e = NormalizeEmail(it->get<std::string>())) contact.email = std::move(*e);
  }
  if (auto it = traits.find("phone"); it != traits.end() && (it->is_string() || it->is_number())) {
    std::string region = options.default_region;
    if (auto c = traits.find("country");
        c != traits.end() && c->is_string() && c->get<std::string>().size() == 2)
      region = c->get<std::string>();
    const std::string raw = it->is_string() ? it->get<std::string>() : it->dump();
    if (auto p = NormalizePhone(raw, region)) contact.phone = std::move(*p);
  }
}

Status MergeContactFields(Contact& into, const Contact& from) {
  NUDGE_ASSIGN_OR_RETURN(into.traits, FillTraits(into.traits, from.traits));
  NUDGE_ASSIGN_OR_RETURN(into.tags, UnionTags(into.tags, from.tags));
  if (!into.user_id) into.user_id = from.user_id;
  if (!into.email) into.email = from.email;
  if (!into.phone) into.phone = from.phone;
  if (!into.source) into.source = from.source;
  if (!into.import_id) into.import_id = from.import_id;
  into.created_at = std::min(into.created_at, from.created_at);
  into.last_seen_at = std::max(into.last_seen_at, from.last_seen_at);
  return Status::Ok();
}

}  // namespace nudge::profile
