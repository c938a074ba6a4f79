// Tests for core/registry: insert in ascending id order, find hit and miss, erase, size, append_ids
// (ascending, one id excluded) and for_each; 100k entries drive the hash table through its rehashes.
#include "core/registry.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace ringhub {
namespace {

using protocol::UserId;

// Entries must outlive the registry that links them, so each test declares them first.
std::vector<RegistryEntry> make_entries(std::size_t count, UserId first, UserId step) {
  std::vector<RegistryEntry> entries(count);
  for (std::size_t i = 0; i < count; ++i) {
    entries[i].id = first + i * step;
  }
  return entries;
}

std::vector<UserId> ids_of(const Registry& registry, UserId except = 0) {
  std::vector<UserId> ids;
  registry.append_ids(ids, except);
  return ids;
}

TEST(RegistryTest, StartsEmpty) {
  Registry registry;
  EXPECT_EQ(registry.size(), 0U);
  EXPECT_EQ(registry.find(1), nullptr);
  EXPECT_TRUE(ids_of(registry).empty());
}

TEST(RegistryTest, FindReturnsTheInsertedEntry) {
  std::vector<RegistryEntry> entries = make_entries(5, 10, 3);  // 10 13 16 19 22
  Registry registry;
  for (RegistryEntry& e : entries) {
    registry.insert(e);
  }
  EXPECT_EQ(registry.size(), 5U);
  for (RegistryEntry& e : entries) {
    EXPECT_EQ(registry.find(e.id), &e) << e.id;
  }
  EXPECT_EQ(registry.find(0), nullptr);
  EXPECT_EQ(registry.find(11), nullptr);
  EXPECT_EQ(registry.find(23), nullptr);
  EXPECT_EQ(registry.find(10 + 64), nullptr);
}

TEST(RegistryTest, EraseRemovesOnlyThatEntry) {
  std::vector<RegistryEntry> entries = make_entries(4, 1, 1);
  Registry registry;
  for (RegistryEntry& e : entries) {
    registry.insert(e);
  }
  registry.erase(entries[1]);
  EXPECT_EQ(registry.size(), 3U);
  EXPECT_EQ(registry.find(2), nullptr);
  EXPECT_EQ(registry.find(1), &entries[0]);
  EXPECT_EQ(registry.find(3), &entries[2]);
  EXPECT_EQ(ids_of(registry), (std::vector<UserId>{1, 3, 4}));

  registry.erase(entries[3]);  // the newest: a later insert must still sort after the rest
  registry.erase(entries[0]);
  EXPECT_EQ(ids_of(registry), (std::vector<UserId>{3}));
  RegistryEntry later;
  later.id = 9;
  registry.insert(later);
  EXPECT_EQ(ids_of(registry), (std::vector<UserId>{3, 9}));
  EXPECT_EQ(registry.find(9), &later);
  registry.erase(later);
  registry.erase(entries[2]);
  EXPECT_EQ(registry.size(), 0U);
  EXPECT_EQ(registry.find(3), nullptr);
}

TEST(RegistryTest, AppendIdsIsAscendingAndExcludesOneId) {
  std::vector<RegistryEntry> entries = make_entries(6, 100, 7);
  Registry registry;
  for (RegistryEntry& e : entries) {
    registry.insert(e);
  }
  std::vector<UserId> out = {42};  // appends: what is already there stays
  registry.append_ids(out, 114);
  EXPECT_EQ(out, (std::vector<UserId>{42, 100, 107, 121, 128, 135}));
  EXPECT_EQ(ids_of(registry, 999), (std::vector<UserId>{100, 107, 114, 121, 128, 135}));
  EXPECT_EQ(ids_of(registry, 100), (std::vector<UserId>{107, 114, 121, 128, 135}));
  EXPECT_EQ(ids_of(registry, 135), (std::vector<UserId>{100, 107, 114, 121, 128}));
}

TEST(RegistryTest, ForEachWalksAscendingAndMayEraseTheCurrentEntry) {
  std::vector<RegistryEntry> entries = make_entries(10, 1, 1);
  Registry registry;
  for (RegistryEntry& e : entries) {
    registry.insert(e);
  }
  std::vector<UserId> seen;
  registry.for_each([&](RegistryEntry& e) {
    seen.push_back(e.id);
    if (e.id % 2 == 0) {
      registry.erase(e);
    }
  });
  EXPECT_EQ(seen, (std::vector<UserId>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(ids_of(registry), (std::vector<UserId>{1, 3, 5, 7, 9}));
  EXPECT_EQ(registry.find(4), nullptr);
  EXPECT_EQ(registry.find(5), &entries[4]);
}

// Enough entries to double the bucket array many times (64 -> 131072), then erase every other one.
TEST(RegistryTest, HundredThousandEntriesSurviveRehashAndErase) {
  constexpr std::size_t kCount = 100000;
  std::vector<RegistryEntry> entries = make_entries(kCount, 1, 1);
  Registry registry;
  for (std::size_t i = 0; i < kCount; ++i) {
    registry.insert(entries[i]);
    if (i % 9973 == 0) {  // spot checks while the table grows
      ASSERT_EQ(registry.find(entries[i].id), &entries[i]);
      ASSERT_EQ(registry.find(entries[0].id), &entries[0]);
    }
  }
  ASSERT_EQ(registry.size(), kCount);
  for (std::size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(registry.find(entries[i].id), &entries[i]) << "id " << entries[i].id;
  }
  for (std::size_t i = 0; i < kCount; i += 2) {
    registry.erase(entries[i]);
  }
  ASSERT_EQ(registry.size(), kCount / 2);
  for (std::size_t i = 0; i < kCount; ++i) {
    RegistryEntry* expected = i % 2 == 0 ? nullptr : &entries[i];
    ASSERT_EQ(registry.find(entries[i].id), expected) << "id " << entries[i].id;
  }
  EXPECT_EQ(registry.find(kCount + 1), nullptr);

  const std::vector<UserId> ids = ids_of(registry);
  ASSERT_EQ(ids.size(), kCount / 2);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(ids[i], 2 * (i + 1)) << "position " << i;
  }
}

// Sparse ids (multiples of a large power of two) must still spread over the buckets and be found.
TEST(RegistryTest, SparseIdsAreFound) {
  constexpr std::size_t kCount = 5000;
  std::vector<RegistryEntry> entries = make_entries(kCount, UserId{1} << 20, UserId{1} << 20);
  Registry registry;
  for (RegistryEntry& e : entries) {
    registry.insert(e);
  }
  for (RegistryEntry& e : entries) {
    ASSERT_EQ(registry.find(e.id), &e) << e.id;
    ASSERT_EQ(registry.find(e.id + 1), nullptr);
  }
}

}  // namespace
}  // namespace ringhub
