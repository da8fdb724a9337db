#include "profile/list_hygiene.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

namespace nudge::profile {
namespace {

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string_view Trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Lowercase letters and digits only: "E-mail Address" -> "emailaddress".
std::string Squash(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (IsAlnum(c)) out += Lower(c);
  }
  return out;
}

std::string LowerAll(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), Lower);
  return out;
}

struct Synonym {
  const char* squashed;
  const char* key;
};

// Column names seen in Mailchimp ("Email Address", merge tags FNAME/LNAME/ADDRESS/PHONE),
// HubSpot ("Record ID", "Company Name", "Country/Region", "Job Title"), Brevo, ActiveCampaign,
// Shopify and hand-made spreadsheets, squashed.
constexpr Synonym kSynonyms[] = {
    // identifiers
    {"email", "email"},
    {"emailaddress", "email"},
    {"emailaddr", "email"},
    {"mail", "email"},
    {"mailaddress", "email"},
    {"primaryemail", "email"},
    {"contactemail", "email"},
    {"subscriberemail", "email"},
    {"useremail", "email"},
    {"customeremail", "email"},
    {"phone", "phone"},
    {"phonenumber", "phone"},
    {"phoneno", "phone"},
    {"mobile", "phone"},
    {"mobilephone", "phone"},
    {"mobilenumber", "phone"},
    {"mobilephonenumber", "phone"},
    {"cell", "phone"},
    {"cellphone", "phone"},
    {"cellnumber", "phone"},
    {"telephone", "phone"},
    {"telephonenumber", "phone"},
    {"tel", "phone"},
    {"sms", "phone"},
    {"smsnumber", "phone"},
    {"msisdn", "phone"},
    {"userid", "user_id"},
    {"externalid", "user_id"},
    {"externaluserid", "user_id"},
    // names
    {"firstname", "first_name"},
    {"fname", "first_name"},
    {"first", "first_name"},
    {"givenname", "first_name"},
    {"forename", "first_name"},
    {"vorname", "first_name"},
    {"lastname", "last_name"},
    {"lname", "last_name"},
    {"last", "last_name"},
    {"surname", "last_name"},
    {"familyname", "last_name"},
    {"nachname", "last_name"},
    {"name", "name"},
    {"fullname", "name"},
    {"contactname", "name"},
    {"displayname", "name"},
    // work
    {"company", "company"},
    {"companyname", "company"},
    {"organization", "company"},
    {"organisation", "company"},
    {"organizationname", "company"},
    {"employer", "company"},
    {"accountname", "company"},
    {"title", "title"},
    {"jobtitle", "title"},
    {"position", "title"},
    {"jobposition", "title"},
    {"industry", "industry"},
    {"website", "website"},
    {"websiteurl", "website"},
    {"url", "website"},
    {"homepage", "website"},
    // address
    {"address", "address"},
    {"streetaddress", "address"},
    {"street", "address"},
    {"address1", "address"},
    {"addressline1", "address"},
    {"city", "city"},
    {"town", "city"},
    {"state", "state"},
    {"stateregion", "state"},
    {"region", "state"},
    {"province", "state"},
    {"stateprovince", "state"},
    {"country", "country"},
    {"countryregion", "country"},
    {"countryname", "country"},
    {"cc", "country_code"},
    {"countrycode", "country_code"},
    {"zip", "postal_code"},
    {"zipcode", "postal_code"},
    {"postalcode", "postal_code"},
    {"postcode", "postal_code"},
    {"zippostalcode", "postal_code"},
    {"plz", "postal_code"},
    {"timezone", "timezone"},
    {"tz", "timezone"},
    // person
    {"birthday", "birthday"},
    {"birthdate", "birthday"},
    {"dateofbirth", "birthday"},
    {"dob", "birthday"},
    {"gender", "gender"},
    {"language", "language"},
    {"preferredlanguage", "language"},
    // CRM bookkeeping
    {"recordid", "crm_id"},
    {"contactid", "crm_id"},
    {"hubspotid", "crm_id"},
    {"hsobjectid", "crm_id"},
    {"lifecyclestage", "lifecycle_stage"},
    {"leadstatus", "lead_status"},
    {"tags", "tags"},
    {"tag", "tags"},
    {"notes", "notes"},
    {"note", "notes"},
};

ColumnKind KindOf(std::string_view key) {
  if (key == "email") return ColumnKind::kEmail;
  if (key == "phone") return ColumnKind::kPhone;
  if (key == "user_id") return ColumnKind::kUserId;
  if (key == "tags") return ColumnKind::kTags;
  return ColumnKind::kTrait;
}

bool IsIdentifier(ColumnKind kind) {
  return kind == ColumnKind::kEmail || kind == ColumnKind::kPhone || kind == ColumnKind::kUserId;
}

// Providers a typo is most likely aimed at, most used first (the first wins a tie).
constexpr const char* kProviders[] = {
    "gmail.com",     "yahoo.com",      "hotmail.com",    "outlook.com",   "icloud.com",
    "aol.com",       "googlemail.com", "live.com",       "msn.com",       "me.com",
    "mac.com",       "comcast.net",    "gmx.de",         "web.de",        "gmx.net",
    "yandex.ru",     "mail.ru",        "protonmail.com", "hotmail.co.uk", "yahoo.co.uk",
    "t-online.de",   "btinternet.com", "sbcglobal.net",  "verizon.net",   "att.net",
    "bellsouth.net", "orange.fr",      "wanadoo.fr",     "free.fr",       "libero.it",
};

// Real domains close to a provider, never reported as typos.
constexpr const char* kRealLookalikes[] = {
    "gmx.com",        "gmx.at",       "gmx.ch",         "gmx.us",         "gmx.fr",
    "gmx.co.uk",      "mail.com",     "mail.de",        "email.com",      "ymail.com",
    "rocketmail.com", "yahoo.fr",     "yahoo.de",       "yahoo.es",       "yahoo.it",
    "yahoo.ca",       "yahoo.in",     "yahoo.co.in",    "yahoo.co.jp",    "yahoo.com.br",
    "yahoo.com.au",   "yahoo.com.mx", "yahoo.com.ar",   "yahoo.gr",       "yahoo.se",
    "hotmail.fr",     "hotmail.de",   "hotmail.es",     "hotmail.it",     "hotmail.be",
    "hotmail.nl",     "hotmail.se",   "hotmail.com.br", "hotmail.com.ar", "live.fr",
    "live.de",        "live.nl",      "live.it",        "live.ca",        "live.be",
    "live.se",        "live.co.uk",   "live.com.au",    "live.com.mx",    "outlook.fr",
    "outlook.de",     "outlook.es",   "outlook.it",     "outlook.be",     "outlook.com.br",
    "aol.de",         "aol.fr",       "aol.co.uk",      "aim.com",        "yandex.com",
    "yandex.ua",      "yandex.by",    "yandex.kz",      "ya.ru",          "bk.ru",
    "list.ru",        "inbox.ru",     "proton.me",      "pm.me",          "protonmail.ch",
    "cloud.com",      "web.com",      "msn.co.uk",      "free.com",       "orange.com",
};

// How far a mistyped provider name may be from the real one: none for short names, which are
// too often other real words (live, life, line, love; mail; web; me).
size_t LabelSlack(std::string_view label) {
  if (label.size() < 5) return 0;
  if (label.size() < 8) return 1;
  return 2;
}

std::pair<std::string_view, std::string_view> SplitDomain(std::string_view domain) {
  const size_t dot = domain.find('.');
  if (dot == std::string_view::npos) return {domain, {}};
  return {domain.substr(0, dot), domain.substr(dot + 1)};
}

// Local parts (lowercase, without . - _) that name a role rather than a person. Sorted.
constexpr std::string_view kRoles[] = {
    "abuse",
    "account",
    "accounting",
    "accounts",
    "admin",
    "administrator",
    "all",
    "billing",
    "booking",
    "bookings",
    "careers",
    "compliance",
    "contact",
    "contactus",
    "customercare",
    "customerservice",
    "customersupport",
    "donotreply",
    "enquiries",
    "enquiry",
    "everyone",
    "feedback",
    "finance",
    "hello",
    "help",
    "helpdesk",
    "hi",
    "hostmaster",
    "hr",
    "info",
    "information",
    "inquiries",
    "inquiry",
    "investors",
    "it",
    "jobs",
    "legal",
    "mailerdaemon",
    "marketing",
    "media",
    "newsletter",
    "noreply",
    "office",
    "orders",
    "partners",
    "postmaster",
    "press",
    "privacy",
    "reception",
    "recruiting",
    "recruitment",
    "reservations",
    "root",
    "sales",
    "security",
    "service",
    "shop",
    "staff",
    "support",
    "sysadmin",
    "team",
    "webmaster",
    "www",
};
static_assert(std::is_sorted(std::begin(kRoles), std::end(kRoles)));

}  // namespace

std::optional<std::string> CanonicalField(std::string_view header) {
  const std::string squashed = Squash(header);
  for (const Synonym& s : kSynonyms) {
    if (squashed == s.squashed) return std::string(s.key);
  }
  return std::nullopt;
}

std::string SnakeCase(std::string_view header) {
  std::string out;
  bool pending = false;  // a separator is due before the next character
  char prev = 0;
  for (char c : Trim(header)) {
    const auto u = static_cast<unsigned char>(c);
    const bool word = IsAlnum(c) || u >= 0x80;
    if (!word) {
      pending = !out.empty();
      prev = c;
      continue;
    }
    // leadScore -> lead_score: a capital after a lowercase letter or digit starts a word.
    if (std::isupper(u) && (std::islower(static_cast<unsigned char>(prev)) ||
                            std::isdigit(static_cast<unsigned char>(prev))))
      pending = !out.empty();
    if (pending) out += '_';
    pending = false;
    out += Lower(c);
    prev = c;
  }
  return out;
}

Result<std::vector<Column>> MapHeaders(const std::vector<std::string>& headers,
                                       const std::vector<std::string>& overrides) {
  std::vector<Column> columns(headers.size());
  std::vector<bool> assigned(headers.size(), false);
  std::set<std::string> used = {"email", "phone", "user_id"};
  bool taken[3] = {false, false, false};  // email, phone, user_id
  auto slot = [](ColumnKind k) -> int {
    return k == ColumnKind::kEmail ? 0 : k == ColumnKind::kPhone ? 1 : 2;
  };
  auto unique = [&used](std::string key) {
    if (used.insert(key).second) return key;
    for (int n = 2;; ++n) {
      std::string candidate = key + "_" + std::to_string(n);
      if (used.insert(candidate).second) return candidate;
    }
  };
  for (size_t i = 0; i < headers.size(); ++i) columns[i].header = headers[i];

  // The user's mappings first: they win over anything recognised.
  for (const std::string& o : overrides) {
    const size_t eq = o.rfind('=');
    if (eq == std::string::npos)
      return Err(Status::Invalid("'" + o + "' is not Header=field", "--map"));
    const std::string_view header = Trim(std::string_view(o).substr(0, eq));
    const std::string_view field = Trim(std::string_view(o).substr(eq + 1));
    if (header.empty() || field.empty())
      return Err(Status::Invalid("'" + o + "' is not Header=field", "--map"));
    std::optional<size_t> found;
    for (size_t i = 0; i < headers.size() && !found; ++i) {
      if (Trim(headers[i]) == header) found = i;
    }
    for (size_t i = 0; i < headers.size() && !found; ++i) {
      if (LowerAll(Trim(headers[i])) == LowerAll(header)) found = i;
    }
    if (!found) {
      std::string names;
      for (size_t i = 0; i < headers.size(); ++i) names += (i ? ", " : "") + headers[i];
      return Err(Status::Invalid(
          "no column is named '" + std::string(header) + "' (the columns are: " + names + ")",
          "--map"));
    }
    Column& c = columns[*found];
    if (assigned[*found]) {  // a later mapping of the same column replaces the earlier one
      if (IsIdentifier(c.kind)) {
        taken[slot(c.kind)] = false;
      } else if (c.kind != ColumnKind::kIgnore) {
        used.erase(c.key);
      }
    }
    assigned[*found] = true;
    c.known = true;
    const std::string lowered = LowerAll(field);
    if (lowered == "ignore" || lowered == "-") {
      c.kind = ColumnKind::kIgnore;
      c.key.clear();
      continue;
    }
    const auto canonical = CanonicalField(field);
    c.key = canonical ? *canonical : std::string(field);
    c.kind = KindOf(c.key);
    if (IsIdentifier(c.kind)) {
      if (taken[slot(c.kind)])
        return Err(Status::Invalid("two columns are mapped to " + c.key, "--map"));
      taken[slot(c.kind)] = true;
    } else {
      if (used.count(c.key))
        return Err(Status::Invalid("two columns are mapped to '" + c.key + "'", "--map"));
      used.insert(c.key);
    }
  }

  // Then what nudge recognises, the first column winning each identifier.
  for (size_t i = 0; i < headers.size(); ++i) {
    if (assigned[i]) continue;
    Column& c = columns[i];
    auto canonical = CanonicalField(headers[i]);
    if (canonical) {
      const ColumnKind kind = KindOf(*canonical);
      if (IsIdentifier(kind) && !taken[slot(kind)]) {
        taken[slot(kind)] = true;
        c.kind = kind;
        c.key = *canonical;
        c.known = true;
        continue;
      }
      if (!IsIdentifier(kind) && !used.count(*canonical)) {
        c.kind = kind;
        c.key = unique(*canonical);
        c.known = true;
        continue;
      }
    }
    // Unknown, or a second column for something already mapped: a trait of its own.
    c.kind = ColumnKind::kTrait;
    std::string key = SnakeCase(headers[i]);
    if (key.empty()) key = "column_" + std::to_string(i + 1);
    c.key = unique(std::move(key));
  }
  return columns;
}

std::optional<std::string> SuggestDomain(std::string_view domain_in) {
  const std::string domain = LowerAll(Trim(domain_in));
  for (const char* p : kProviders) {
    if (domain == p) return std::nullopt;
  }
  for (const char* r : kRealLookalikes) {
    if (domain == r) return std::nullopt;
  }
  const auto [label, suffix] = SplitDomain(domain);
  if (label.empty() || suffix.empty()) return std::nullopt;
  std::optional<std::string> best;
  size_t best_distance = 3;
  for (const char* p : kProviders) {
    const auto [plabel, psuffix] = SplitDomain(p);
    // The distance is at least the difference in length; most domains stop here.
    const size_t slack = LabelSlack(plabel);
    if (label.size() > plabel.size() + slack || plabel.size() > label.size() + slack ||
        suffix.size() > psuffix.size() + 1 || psuffix.size() > suffix.size() + 1)
      continue;
    const size_t label_distance = EditDistance(label, plabel);
    if (label_distance > slack) continue;
    const size_t suffix_distance = EditDistance(suffix, psuffix);
    if (suffix_distance > 1) continue;
    const size_t total = label_distance + suffix_distance;
    if (total == 0 || total > 2) continue;
    if (total < best_distance) {
      best_distance = total;
      best = p;
    }
  }
  return best;
}

bool IsRoleAddress(std::string_view email) {
  email = Trim(email);
  const size_t at = email.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string_view local = email.substr(0, at);
  if (const size_t plus = local.find('+'); plus != std::string_view::npos)
    local = local.substr(0, plus);
  std::string key;
  for (char c : local) {
    if (c == '.' || c == '-' || c == '_') continue;
    key += Lower(c);
  }
  return std::binary_search(std::begin(kRoles), std::end(kRoles), std::string_view(key));
}

std::vector<std::string> SplitTags(std::string_view cell) {
  std::vector<std::string> tags;
  std::string current;
  bool in_quotes = false;
  auto flush = [&] {
    const std::string_view t = Trim(current);
    if (!t.empty() && std::find(tags.begin(), tags.end(), t) == tags.end()) tags.emplace_back(t);
    current.clear();
  };
  for (char c : cell) {
    if (c == '"') {
      in_quotes = !in_quotes;
    } else if (!in_quotes && (c == ',' || c == ';')) {
      flush();
    } else {
      current += c;
    }
  }
  flush();
  return tags;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  // Three rows of the dynamic programme: i-2, i-1 and i.
  std::vector<size_t> two(b.size() + 1), one(b.size() + 1), row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) one[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      row[j] = std::min({one[j] + 1, row[j - 1] + 1, one[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        row[j] = std::min(row[j], two[j - 2] + 1);
    }
    std::swap(two, one);
    std::swap(one, row);
  }
  return one[b.size()];
}

}  // namespace nudge::profile
