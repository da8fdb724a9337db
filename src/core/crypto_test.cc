#include "core/crypto.h"

#include <gtest/gtest.h>

#include <set>

namespace nudge::core {
namespace {

TEST(Crypto, Sha256MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, HmacMatchesRfc4231) {
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, Base64RoundTripsAndRejectsGarbage) {
  EXPECT_EQ(Base64Encode("key:"), "a2V5Og==");
  EXPECT_EQ(*Base64Decode("a2V5Og=="), "key:");
  EXPECT_EQ(*Base64Decode("a2V5Og"), "key:");
  EXPECT_FALSE(Base64Decode("a2V5O*=="));
  EXPECT_EQ(*Base64UrlDecode(Base64UrlEncode("\xff\xfe?>")), "\xff\xfe?>");
  // One text per value: "VA" is 'T'; "VB" (unused bits set) and "VA==" are not read.
  EXPECT_EQ(*Base64UrlDecode("VA"), "T");
  EXPECT_FALSE(Base64UrlDecode("VB"));
  EXPECT_FALSE(Base64UrlDecode("VA=="));
  EXPECT_EQ(*Base64Decode("VB=="), "T");  // standard base64 (uploads) stays lenient
}

TEST(Crypto, TokensAreRandomAndAlphanumeric) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string t = RandomToken(32);
    ASSERT_EQ(t.size(), 32u);
    for (char c : t) ASSERT_TRUE(isalnum(static_cast<unsigned char>(c)));
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
  std::string u = NewUuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
}

}  // namespace
}  // namespace nudge::core
