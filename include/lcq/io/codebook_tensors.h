// How an LCQ codebook layer (lcq/kernels/codebook_layer.h) is stored in a GGUF model file.
// A quantized linear layer "blk.3.attn_q" has no "blk.3.attn_q.weight"; instead (docs/lcq-format.md):
//   blk.3.attn_q.lcq_idx        I8   [rows, ceil(cols*bits/8)]  dense b-bit indices per row
//   blk.3.attn_q.lcq_v          F16  [rank, 2^bits]
//   with double quantization (lcq.dq_bits > 0):
//   blk.3.attn_q.lcq_s_codes    I8   [rank, G]     blk.3.attn_q.lcq_b_codes    I8  [G]
//   blk.3.attn_q.lcq_s_scale    F16  [rank, NB]    blk.3.attn_q.lcq_b_scale    F16 [NB]
//   blk.3.attn_q.lcq_s_offset   F16  [rank, NB]    blk.3.attn_q.lcq_b_offset   F16 [NB]
//   without:
//   blk.3.attn_q.lcq_s          F32  [rank, G]     blk.3.attn_q.lcq_b          F32 [G]
// and the layer's parameters as metadata: lcq.bits, lcq.group_size, lcq.rank, lcq.dq_bits,
// lcq.dq_group (model-wide), each overridable per layer as "lcq.layer.<name>.<key>".
// Rows are in the canonical (Hugging Face) order, also for attn_q/attn_k of GGUF llama files.
#pragma once

#include "lcq/io/model_source.h"
#include "lcq/io/writers.h"
#include "lcq/kernels/codebook_layer.h"

#include <deque>
#include <string>
#include <vector>

namespace lcq::io {

// Appends the tensors of `layer` under `name` (e.g. "blk.3.attn_q") to `out`; the bytes they
// point to are kept in `storage`, which must outlive the write.
void add_codebook_tensors(const std::string& name, const CodebookLayer& layer, std::vector<WriteTensor>& out,
                          std::deque<std::vector<uint8_t>>& storage);

// The bytes layer `name` adds to a GGUF file of this alignment: its tensor infos and padded
// data. Only `layer`'s shape and parameters are read (rows, cols, bits, group, rank, dq_bits,
// dq_group), not its data: CodebookLayer::shaped() makes such a layer.
uint64_t codebook_file_bytes(const std::string& name, const CodebookLayer& layer, uint32_t alignment = 32);
// An upper bound of the bytes of the per-layer metadata key "lcq.layer.<name>.<key>" (an integer).
uint64_t codebook_key_bytes(const std::string& name, const std::string& key);
// ... of all five per-layer keys (bits, group_size, rank, dq_bits, dq_group).
uint64_t codebook_all_keys_bytes(const std::string& name);

// The model-wide metadata keys for layers quantized with these settings.
nlohmann::json codebook_metadata(const CodebookLayer& like);

// True when `src` stores linear layer `name` as an LCQ codebook.
bool has_codebook_layer(const ModelSource& src, const std::string& name);

// How many of the file's tensors store layer `name` (what a loader's progress counts).
int codebook_tensor_count(const ModelSource& src, const std::string& name);

// Reads and validates layer `name`, whose dense weight would be rows x cols. Throws lcq::Error
// naming the file and the tensor on any inconsistency.
CodebookLayer read_codebook_layer(const ModelSource& src, const std::string& name, int64_t rows, int64_t cols);

}  // namespace lcq::io
