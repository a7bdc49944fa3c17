// What every fuzz target shares: the oracle for the project's rule on bad input (one lcq::Error
// whose message is one line naming the file; anything else is a finding), and the steps the
// CLI takes after a parser succeeds (dequantizing tensors, building and running a tokenizer,
// reading and packing LCQ layers), so that a target covers what a user's file reaches.
#pragma once

#include "lcq/core/error.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/io/model_source.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/matrix.h"
#include "lcq/kernels/packed_codebook.h"
#include "lcq/tokenizer/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace lcq::fuzz {

// A finding: libFuzzer saves the input when the process aborts.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "lcq fuzz finding: %s\n", what.c_str());
  std::abort();
}

// Runs fn; an lcq::Error is the expected answer to bad input, as long as its message is one
// line that names `name` (the path the parser was given). Other exceptions are findings:
// the CLI would print them without the file's name (std::bad_alloc: an allocation sized
// from the file).
template <typename Fn>
bool expect_clean(const std::string& name, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const lcq::Error& e) {
    const std::string msg = e.what();
    if (msg.find('\n') != std::string::npos) finding("error message spans lines: " + msg);
    if (msg.find(name) == std::string::npos) finding("error message does not name " + name + ": " + msg);
    return false;
  } catch (const std::exception& e) {
    finding(std::string("exception other than lcq::Error: ") + e.what());
  }
}

// One core for the fuzzer (the kernels' OpenMP threads would take the others).
inline void single_thread() { omp_set_num_threads(1); }

// What model::build_model() does with every dense tensor: dequantize it to f32 in
// canonical order (q/k rows permuted back when the file stores them interleaved).
inline void dequantize_tensors(const io::ModelSource& src) {
  std::vector<float> out;
  for (const io::TensorView& t : src.tensors) {
    if (!io::dtype_is_float_convertible(t.dtype)) continue;
    out.resize(size_t(t.numel()));
    io::load_tensor_f32(src, t, out.data());
  }
}

// Text that reaches the tokenizers' special cases: special tokens written out, byte
// fallback, digits, multi-byte and invalid UTF-8, the SentencePiece space mark.
inline const std::string& sample_text() {
  static const std::string text =
      "Once upon a time, <s> Lily saw 1234 birds</s>.\n\n <|endoftext|>\t\xc3\xbc \xe6\x97\xa5\xe6\x9c\xac "
      "\xe2\x96\x81x \xff\xfe\xc3 <unk> don't  ";
  return text;
}

// What the CLI does with a vocabulary: build the tokenizer, encode, decode.
inline void run_tokenizer(const tokenizer::Vocab& vocab) {
  if (vocab.empty()) return;
  const auto tok = tokenizer::make_tokenizer(vocab);
  const std::vector<int> ids = tok->encode(sample_text(), true);
  for (int id : ids)
    if (id < 0 || id >= tok->size()) finding("encode produced id " + std::to_string(id) + " outside the vocabulary");
  (void)tok->decode(ids);
  std::vector<int> all;  // every token once, as generation may emit it
  for (int id = 0; id < tok->size() && id < 4096; ++id) all.push_back(id);
  (void)tok->decode(all);
}

inline bool same_layer(const CodebookLayer& a, const CodebookLayer& b) {
  return a.rows == b.rows && a.cols == b.cols && a.bits == b.bits && a.group == b.group && a.rank == b.rank &&
         a.indices == b.indices && a.dq_bits == b.dq_bits && a.dq_group == b.dq_group &&
         a.s_codes == b.s_codes && a.s_scale == b.s_scale && a.s_offset == b.s_offset && a.b_codes == b.b_codes &&
         a.b_scale == b.b_scale && a.b_offset == b.b_offset && a.s_f32 == b.s_f32 && a.b_f32 == b.b_f32 &&
         a.v == b.v;
}

// One LCQ layer as model::build_model() and the runtime use it: read and validate it,
// dequantize it, pack it for both kernel layouts and check that the packing gives the layer
// back exactly, then run one product through each packed form and through the runtime's
// kernels::Matrix of every family that applies.
inline void use_codebook_layer(const io::ModelSource& src, const std::string& base, int64_t out, int64_t in) {
  const CodebookLayer layer = io::read_codebook_layer(src, base, out, in);
  std::vector<float> w(size_t(layer.rows * layer.cols)), x(size_t(layer.cols), 0.5f), y(size_t(layer.rows));
  layer.dequantize(w.data());
  const kernels::PackedCodebookMatrix packed = kernels::PackedCodebookMatrix::pack(layer);
  if (!same_layer(packed.unpack(), layer)) finding(base + ": PackedCodebookMatrix::unpack() differs from the layer");
  packed.gemv(x.data(), y.data(), kernels::KernelPath::kScalar);
  packed.gemv(x.data(), y.data(), kernels::KernelPath::kAuto);
  if (packed.int8_applies()) packed.gemv(x.data(), y.data(), kernels::KernelPath::kInt8Scalar);
  if (kernels::LutCodebookMatrix::applies(layer)) {
    const kernels::LutCodebookMatrix lut = kernels::LutCodebookMatrix::pack(layer);
    if (!same_layer(lut.unpack(), layer)) finding(base + ": LutCodebookMatrix::unpack() differs from the layer");
    lut.gemv(x.data(), y.data(), kernels::LutPath::kScalar);
  }
  for (kernels::KernelChoice choice : {kernels::KernelChoice::kFloat, kernels::KernelChoice::kInt8,
                                       kernels::KernelChoice::kLut}) {
    const auto m = kernels::make_codebook_matrix(layer, kernels::choose_family(layer, choice));
    const auto back = m->codebook();
    if (!back || !same_layer(*back, layer)) finding(base + ": Matrix::codebook() differs from the layer");
    m->gemv_units(x.data(), y.data(), 0, m->work_units());
    m->dequantize_rows(0, std::min<int64_t>(m->rows(), 2), w.data());  // an embedding lookup
  }
}

// Every layer the file stores as a codebook, where model::build_model() looks for them: the
// linear layers of each block, the token embedding and the output head.
inline void read_codebook_layers(const io::ModelSource& src) {
  const ModelConfig& c = src.config;
  const int64_t D = c.dim, F = c.hidden_dim, Q = int64_t(c.n_heads) * c.head_dim, KV = c.kv_dim();
  const struct {
    const char* name;
    int64_t out, in;
  } linears[] = {{"attn_q", Q, D},      {"attn_k", KV, D}, {"attn_v", KV, D}, {"attn_output", D, Q},
                 {"ffn_gate", F, D},    {"ffn_up", F, D},  {"ffn_down", D, F}};
  auto maybe = [&](const std::string& base, int64_t out, int64_t in) {
    if (!src.find(base + ".weight") && io::has_codebook_layer(src, base)) use_codebook_layer(src, base, out, in);
  };
  maybe("token_embd", c.vocab_size, D);
  maybe("output", c.vocab_size, D);
  for (int l = 0; l < c.n_layers; ++l)
    for (const auto& lin : linears) maybe("blk." + std::to_string(l) + "." + lin.name, lin.out, lin.in);
}

inline std::shared_ptr<const MappedFile> bytes_as_file(const std::string& name, const uint8_t* data, size_t size) {
  return MappedFile::from_bytes(name, data, size);
}

}  // namespace lcq::fuzz
