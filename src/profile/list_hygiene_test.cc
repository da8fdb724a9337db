#include "profile/list_hygiene.h"

#include <gtest/gtest.h>

namespace nudge::profile {
namespace {

std::string KeyOf(const std::vector<Column>& columns, const std::string& header) {
  for (const auto& c : columns) {
    if (c.header == header) return c.key;
  }
  return "<no column " + header + ">";
}

TEST(HeaderMapping, RecognisesMailchimpAndHubspotColumns) {
  EXPECT_EQ(CanonicalField("Email Address"), "email");
  EXPECT_EQ(CanonicalField("E-mail"), "email");
  EXPECT_EQ(CanonicalField("email"), "email");
  EXPECT_EQ(CanonicalField("Phone Number"), "phone");
  EXPECT_EQ(CanonicalField("Mobile"), "phone");
  EXPECT_EQ(CanonicalField("First Name"), "first_name");
  EXPECT_EQ(CanonicalField("FNAME"), "first_name");
  EXPECT_EQ(CanonicalField("last_name"), "last_name");
  EXPECT_EQ(CanonicalField("Company Name"), "company");
  EXPECT_EQ(CanonicalField("Country/Region"), "country");
  EXPECT_EQ(CanonicalField("Job Title"), "title");
  EXPECT_EQ(CanonicalField("TAGS"), "tags");
  EXPECT_EQ(CanonicalField("Record ID"), "crm_id");
  EXPECT_EQ(CanonicalField(" user_id "), "user_id");
  EXPECT_EQ(CanonicalField("MEMBER_RATING"), std::nullopt);
}

TEST(HeaderMapping, UnknownColumnsBecomeSnakeCaseTraits) {
  EXPECT_EQ(SnakeCase("MEMBER_RATING"), "member_rating");
  EXPECT_EQ(SnakeCase("Lead Status"), "lead_status");
  EXPECT_EQ(SnakeCase("leadScore"), "lead_score");
  EXPECT_EQ(SnakeCase("  Plan (2024) / Tier "), "plan_2024_tier");
  EXPECT_EQ(SnakeCase("Größe"), "größe");
  EXPECT_EQ(SnakeCase("???"), "");

  auto cols = MapHeaders({"Email Address", "First Name", "MEMBER_RATING", "", "TAGS"});
  ASSERT_TRUE(cols) << cols.error().ToString();
  EXPECT_EQ((*cols)[0].kind, ColumnKind::kEmail);
  EXPECT_EQ((*cols)[1].key, "first_name");
  EXPECT_TRUE((*cols)[1].known);
  EXPECT_EQ((*cols)[2].key, "member_rating");
  EXPECT_FALSE((*cols)[2].known);
  EXPECT_EQ((*cols)[3].key, "column_4");
  EXPECT_EQ((*cols)[4].kind, ColumnKind::kTags);
}

TEST(HeaderMapping, TheFirstColumnKeepsAnIdentifierAndKeysStayUnique) {
  auto cols = MapHeaders({"Phone Number", "Mobile Phone Number", "Email", "email", "Name", "name"});
  ASSERT_TRUE(cols);
  EXPECT_EQ((*cols)[0].kind, ColumnKind::kPhone);
  EXPECT_EQ((*cols)[1].kind, ColumnKind::kTrait);
  EXPECT_EQ((*cols)[1].key, "mobile_phone_number");
  EXPECT_EQ((*cols)[2].kind, ColumnKind::kEmail);
  EXPECT_EQ((*cols)[3].kind, ColumnKind::kTrait);
  EXPECT_EQ((*cols)[3].key, "email_2");
  EXPECT_EQ((*cols)[4].key, "name");
  EXPECT_EQ((*cols)[5].key, "name_2");
}

TEST(HeaderMapping, UserMappingsWin) {
  auto cols = MapHeaders({"Record ID", "Email", "Mobile", "Notes", "Plan"},
                         {"Record ID=user_id", "mobile = ignore", "Plan=planName", "Notes=email"});
  ASSERT_TRUE(cols) << cols.error().ToString();
  EXPECT_EQ(KeyOf(*cols, "Record ID"), "user_id");
  EXPECT_EQ((*cols)[0].kind, ColumnKind::kUserId);
  EXPECT_EQ((*cols)[2].kind, ColumnKind::kIgnore);
  EXPECT_EQ(KeyOf(*cols, "Plan"), "planName");
  EXPECT_EQ((*cols)[3].kind, ColumnKind::kEmail);  // the override takes email...
  EXPECT_EQ((*cols)[1].kind, ColumnKind::kTrait);  // ...from the column that had it
  EXPECT_EQ((*cols)[1].key, "email_2");

  auto missing = MapHeaders({"Email"}, {"E-Mail Adresse=email"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().where(), "--map");
  EXPECT_NE(missing.error().message().find("the columns are: Email"), std::string::npos);
  // The last mapping of a column counts, and frees what the earlier one took.
  auto twice = MapHeaders({"A", "B", "C"}, {"A=email", "A=plan", "B=email"});
  ASSERT_TRUE(twice) << twice.error().ToString();
  EXPECT_EQ((*twice)[0].key, "plan");
  EXPECT_EQ((*twice)[1].kind, ColumnKind::kEmail);
  EXPECT_EQ((*twice)[2].key, "c");
  auto reserved = MapHeaders({"A", "Email", "email"}, {"A=email", "A=plan"});
  ASSERT_TRUE(reserved);
  EXPECT_EQ((*reserved)[1].kind, ColumnKind::kEmail);
  EXPECT_EQ((*reserved)[2].key, "email_2");  // "email" stays reserved for the identifier
  EXPECT_FALSE(MapHeaders({"Email"}, {"Email"}));
  EXPECT_FALSE(MapHeaders({"a", "b"}, {"a=email", "b=email"}));
}

TEST(DomainTypos, SuggestsTheProviderForLikelyTypos) {
  EXPECT_EQ(SuggestDomain("gmial.com"), "gmail.com");
  EXPECT_EQ(SuggestDomain("gamil.com"), "gmail.com");
  EXPECT_EQ(SuggestDomain("gmai.com"), "gmail.com");
  EXPECT_EQ(SuggestDomain("GMAIL.CON"), "gmail.com");
  EXPECT_EQ(SuggestDomain("gmail.co"), "gmail.com");
  EXPECT_EQ(SuggestDomain("gmail.cmo"), "gmail.com");
  EXPECT_EQ(SuggestDomain("gmial.con"), "gmail.com");
  EXPECT_EQ(SuggestDomain("hotmial.com"), "hotmail.com");
  EXPECT_EQ(SuggestDomain("hotmail.co"), "hotmail.com");
  EXPECT_EQ(SuggestDomain("yahooo.com"), "yahoo.com");
  EXPECT_EQ(SuggestDomain("yaho.com"), "yahoo.com");
  EXPECT_EQ(SuggestDomain("outlok.com"), "outlook.com");
  EXPECT_EQ(SuggestDomain("iclod.com"), "icloud.com");
  EXPECT_EQ(SuggestDomain("googlemial.com"), "googlemail.com");
  EXPECT_EQ(SuggestDomain("gmx.dr"), "gmx.de");
  EXPECT_EQ(SuggestDomain("web.dw"), "web.de");
  EXPECT_EQ(SuggestDomain("yandex.ry"), "yandex.ru");
  EXPECT_EQ(SuggestDomain("comcast.ne"), "comcast.net");
  EXPECT_EQ(SuggestDomain("aol.con"), "aol.com");
  EXPECT_EQ(SuggestDomain("hotmail.co.uj"), "hotmail.co.uk");
}

TEST(DomainTypos, LeavesRealDomainsAlone) {
  for (const char* d :
       {"gmail.com",   "gmx.com",   "gmx.de",    "gmx.net",       "gmx.at",
        "mail.com",    "email.com", "ymail.com", "hotmail.co.uk", "hotmail.fr",
        "yahoo.co.jp", "live.ca",   "me.com",    "mac.com",       "aim.com",
        "life.com",    "love.com",  "line.me",   "example.com",   "acme.io",
        "aon.com",     "mail.ru",   "ya.ru",     "proton.me",     "gmail.co.uk.example.org"})
    EXPECT_EQ(SuggestDomain(d), std::nullopt) << d;
}

TEST(RoleAddresses, FlagsRolesNotPeople) {
  for (const char* e : {"info@acme.io", "Info@acme.io", "no-reply@acme.io", "noreply@acme.io",
                        "do_not_reply@acme.io", "support+eu@acme.io", "postmaster@acme.io",
                        "sales@acme.io", "hr@acme.io", "careers@acme.io", "hello@acme.io"})
    EXPECT_TRUE(IsRoleAddress(e)) << e;
  for (const char* e : {"ann@acme.io", "information.desk.jane@acme.io", "infos@acme.io",
                        "harry@acme.io", "salesforce.admin.bob@acme.io", "not-an-email"})
    EXPECT_FALSE(IsRoleAddress(e)) << e;
}

TEST(Tags, SplitsMailchimpAndPlainLists) {
  EXPECT_EQ(SplitTags("\"VIP\",\"Newsletter\""), (std::vector<std::string>{"VIP", "Newsletter"}));
  EXPECT_EQ(SplitTags("a; b ,a,, \"c, d\""), (std::vector<std::string>{"a", "b", "c, d"}));
  EXPECT_TRUE(SplitTags("  ").empty());
}

TEST(EditDistance, CountsTranspositionsAsOneEdit) {
  EXPECT_EQ(EditDistance("gmail", "gmial"), 1u);
  EXPECT_EQ(EditDistance("gmail", "gmal"), 1u);
  EXPECT_EQ(EditDistance("com", "de"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("ca", "abc"), 3u);  // restricted: no edit inside a transposition
}

}  // namespace
}  // namespace nudge::profile
