#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/core/mapped_file.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <filesystem>
#include <random>

using namespace lcq;

TEST(Half, F16MatchesHardwareForAllBitPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float ref = _cvtsh_ss(uint16_t(h));
    float got = f16_to_f32(uint16_t(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(ref, got) << h;
    }
  }
}

TEST(Half, F32ToF16RoundsLikeHardware) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    uint16_t ref = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    ASSERT_EQ(ref, f32_to_f16(f)) << f;
  }
}

TEST(Half, Bf16RoundTrip) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), f32_to_bf16(1.0f));  // ties to even
}

TEST(AtomicFile, CommitRenamesAndAbortLeavesNothing) {
  std::string dir = test::scratch_dir();
  std::string path = dir + "/out.bin";
  {
    AtomicFile f(path);
    f.write("hello");
    // not committed: destructor removes the temporary file
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);
  write_file_atomic(path, "hello");
  EXPECT_EQ(test::read_bytes(path), "hello");
}

TEST(MappedFile, ErrorsNameTheFile) {
  try {
    MappedFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
  std::string path = test::scratch_dir() + "/x";
  test::write_bytes(path, "abc");
  auto f = MappedFile::open(path);
  ByteReader r(f->data(), f->size(), path);
  EXPECT_EQ(r.read<uint8_t>("a"), 'a');
  EXPECT_THROW(r.read<uint32_t>("a u32"), Error);
}
