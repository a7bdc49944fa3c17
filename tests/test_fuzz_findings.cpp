// What the fuzzers found (docs/fuzzing.md), one test per finding: the smallest file with the
// problem, built here, and the one clear error line naming the file that lcq now gives.
#include "gguf_test_helpers.h"
#include "lcq/core/half.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/io/model_source.h"
#include "lcq/io/safetensors.h"
#include "lcq/kernels/packed_codebook.h"

#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <limits>

namespace lcq::test {
namespace {

// A 2-bit, rank-one codebook layer [rows x cols] with groups of 8, S = 1, B = 0 and V = v.
CodebookLayer small_layer(int64_t rows, int64_t cols, const std::vector<float>& v, float s = 1.0f) {
  CodebookLayer l;
  l.rows = rows, l.cols = cols, l.bits = 2, l.group = 8, l.rank = 1, l.dq_bits = 0;
  l.indices.assign(size_t(rows * cols), 0);
  for (size_t i = 0; i < l.indices.size(); ++i) l.indices[i] = uint8_t(i % 4);
  l.s_f32.assign(size_t(l.n_groups()), s);
  l.b_f32.assign(size_t(l.n_groups()), 0.0f);
  for (float x : v) l.v.push_back(f32_to_f16(x));
  return l;
}

// The tiny llama model with blk.0.attn_q stored as `layer` (written without the checks
// CodebookLayer::validate() makes, as a stranger's file would be).
std::string model_with_codebook_layer(const std::string& dir, const CodebookLayer& layer) {
  const TinyModel m = tiny_model("llama");
  std::vector<WriteTensor> tensors;
  for (const WriteTensor& t : m.tensors(DType::F32))
    if (t.name != "blk.0.attn_q.weight") tensors.push_back(t);
  std::deque<std::vector<uint8_t>> storage;
  io::add_codebook_tensors("blk.0.attn_q", layer, tensors, storage);
  WriteOptions opts;
  opts.extra_metadata = io::codebook_metadata(layer);
  const std::string path = dir + "/codebook.gguf";
  write_gguf_model(path, m.c, tensors, m.vocab, opts);
  return path;
}

// fuzz_codebook: a NaN in V passed the checks, every weight of the layer was NaN, and the LUT
// kernel rounded NaN to int8 (undefined behaviour). Infinities, and finite values whose
// products overflow, did the same.
TEST(FuzzFindings, CodebookWithNonFiniteEntries) {
  const std::string dir = scratch_dir();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const TinyModel m = tiny_model("llama");
  const int64_t q_rows = int64_t(m.c.n_heads) * m.c.head_dim, cols = m.c.dim;
  {  // the valid layer loads (the file is right apart from the value)
    const std::string path = model_with_codebook_layer(dir, small_layer(q_rows, cols, {-1, 0, 0.5f, 1}));
    const io::ModelSource src = io::load_model_source(path);
    EXPECT_NO_THROW(io::read_codebook_layer(src, "blk.0.attn_q", q_rows, cols));
  }
  struct Case {
    std::vector<float> v;
    float s;
    std::string value;
  };
  for (const Case& c : {Case{{-1, nan, 0.5f, 1}, 1.0f, "nan"}, Case{{-1, 0, inf, 1}, 1.0f, "inf"},
                        Case{{-1, 0, 0.5f, 60000.0f}, 1e35f, "inf"}}) {
    const std::string path = model_with_codebook_layer(dir, small_layer(q_rows, cols, c.v, c.s));
    const io::ModelSource src = io::load_model_source(path);
    expect_error([&] { io::read_codebook_layer(src, "blk.0.attn_q", q_rows, cols); },
                 {path, "layer 'blk.0.attn_q'", "codebook entry", c.value});
  }
}

// fuzz_codebook: a layer stored with a group wider than its row (a mutated group_size of
// 12582928 for 16 columns) was read as it was, but packing stores the row's width (one group
// per row, as CodebookLayer::shaped() makes it), so the packed layer unpacked to another
// group size than the file's. The reader now stores such a group as the row's width; the
// layer means the same either way (one group per row).
TEST(FuzzFindings, CodebookGroupWiderThanTheRow) {
  const std::string dir = scratch_dir();
  const TinyModel m = tiny_model("llama");
  const int64_t q_rows = int64_t(m.c.n_heads) * m.c.head_dim, cols = m.c.dim;
  CodebookLayer wide = small_layer(q_rows, cols, {-1, 0, 0.5f, 1});
  wide.group = 12582928;  // one group per row: n_groups() is q_rows, as for group = cols
  wide.s_f32.assign(size_t(wide.n_groups()), 1.0f);
  wide.b_f32.assign(size_t(wide.n_groups()), 0.0f);
  const std::string path = model_with_codebook_layer(dir, wide);
  const io::ModelSource src = io::load_model_source(path);
  const CodebookLayer read = io::read_codebook_layer(src, "blk.0.attn_q", q_rows, cols);
  EXPECT_EQ(read.group, cols);
  EXPECT_EQ(read.n_groups(), q_rows);
  const CodebookLayer back = kernels::PackedCodebookMatrix::pack(read).unpack();
  EXPECT_EQ(back.group, read.group);
  EXPECT_EQ(back.indices, read.indices);
  EXPECT_EQ(back.s_f32, read.s_f32);
  EXPECT_EQ(back.v, read.v);
  std::vector<float> a(size_t(q_rows * cols)), b(a.size());
  read.dequantize(a.data());
  back.dequantize(b.data());
  EXPECT_EQ(a, b);
}

// fuzz_safetensors: a tensor name holding a newline was quoted as it was, so the error about
// the tensor spanned two lines. Names, dtypes and keys from a file are now quoted printably
// (also in the GGUF and Hugging Face loaders).
TEST(FuzzFindings, FileStringsInErrorsStayOnOneLine) {
  const std::string dir = scratch_dir();
  const std::string header = R"({"a\nb":{"dtype":"F32","shape":[2],"data_offsets":[0,64]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(&bytes[0], &n, 8);
  bytes += header + std::string(8, '\0');
  const std::string path = dir + "/newline.safetensors";
  write_bytes(path, bytes);
  expect_error([&] { io::read_safetensors(path); }, {path, "tensor 'a\\x0ab'", "outside the data buffer"});

  // The same name in a valid file reaches the Hugging Face loader's check of tensor names.
  const TinyModel m = tiny_model("llama");
  write_hf_model(dir + "/hf", m.c, m.tensors(DType::F32), m.vocab);
  const float zeros[2] = {0, 0};
  write_safetensors(dir + "/hf/model.safetensors", {{"a\nb", {2}, DType::F32, zeros, nullptr}}, {});
  expect_error([&] { io::load_model_source(dir + "/hf"); }, {dir + "/hf", "a\\x0ab"});

  // A GGUF architecture name with a newline.
  write_gguf_model(dir + "/tiny.gguf", m.c, m.tensors(DType::F32), m.vocab);
  std::string gguf = read_bytes(dir + "/tiny.gguf");
  const size_t at = after(gguf, "general.architecture");
  ASSERT_NE(gguf.find("llama", at), std::string::npos);
  gguf[gguf.find("llama", at) + 2] = '\n';  // "ll\nma"
  const std::string gpath = write_new(dir, gguf);
  expect_error([&] { io::load_model_source(gpath); }, {gpath, "unsupported architecture 'll\\x0ama'"});
}

}  // namespace
}  // namespace lcq::test
