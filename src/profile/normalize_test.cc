#include "profile/normalize.h"

#include <gtest/gtest.h>

namespace nudge::profile {
namespace {

TEST(NormalizeEmail, TrimsAndLowercasesTheDomainOnly) {
  EXPECT_EQ(*NormalizeEmail("  Ann.Lee@Example.COM \t"), "Ann.Lee@example.com");
  EXPECT_EQ(*NormalizeEmail("mailto:bob@x.io"), "bob@x.io");
  EXPECT_EQ(EmailKey("Ann.Lee@example.com"), "ann.lee@example.com");
}

TEST(NormalizeEmail, SaysWhatIsWrong) {
  EXPECT_NE(NormalizeEmail("ann.example.com").error().message().find("no '@'"), std::string::npos);
  EXPECT_NE(NormalizeEmail("@example.com").error().message().find("nothing before"),
            std::string::npos);
  EXPECT_NE(NormalizeEmail("ann@localhost").error().message().find("no dot"), std::string::npos);
  EXPECT_NE(NormalizeEmail("ann lee@x.com").error().message().find("space"), std::string::npos);
  EXPECT_FALSE(NormalizeEmail("ann@@x.com"));
  EXPECT_FALSE(NormalizeEmail("ann..lee@x.com"));
  EXPECT_FALSE(NormalizeEmail("ann@x..com"));
  EXPECT_FALSE(NormalizeEmail(""));
}

TEST(NormalizePhone, GivesE164) {
  EXPECT_EQ(*NormalizePhone("(415) 555-2671", "US"), "+14155552671");
  EXPECT_EQ(*NormalizePhone("+44 20 7946 0958", "US"), "+442079460958");
  EXPECT_EQ(*NormalizePhone("030 901820", "DE"), "+4930901820");
  EXPECT_EQ(*NormalizePhone("030 901820", "de"), "+4930901820");
}

TEST(NormalizePhone, RejectsNonNumbers) {
  EXPECT_FALSE(NormalizePhone("call me", "US"));
  EXPECT_FALSE(NormalizePhone("123", "US"));
  EXPECT_FALSE(NormalizePhone("555-0000", ""));
}

}  // namespace
}  // namespace nudge::profile
