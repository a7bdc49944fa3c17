// load_vocab_file(): recognises the tokenizer file by content and reads llama2.c
// tokenizer.bin and SentencePiece .model files (tokenizer.json is in vocab_json.cpp).
#include <cmath>
#include <cstring>
#include <filesystem>

#include "internal.h"
#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"
#include "spm_library.h"

namespace lcq::tokenizer {
namespace detail {

namespace {

// --- llama2.c tokenizer.bin ---------------------------------------------------------------
// int32 max_token_length, then per token: float32 score, int32 byte length, bytes. The
// vocabulary size is not stored: tokens run to the end of the file. llama2.c's exporter
// wrote SentencePiece pieces with "▁" turned into " " and BOS/EOS as "\n<s>\n"/"\n</s>\n";
// both are undone here so the vocabulary looks like every other SentencePiece one.
int32_t read_i32(const char* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

Vocab load_llama2c_vocab(const std::string& path, std::string_view bytes) {
  const size_t size = bytes.size();
  if (size < 4) fail("{}: too small for a llama2.c tokenizer.bin ({} bytes)", path, size);
  const int32_t max_len = read_i32(bytes.data());
  if (max_len <= 0 || max_len > (1 << 16))
    fail("{}: max_token_length {} is not plausible for a llama2.c tokenizer.bin", path, max_len);

  Vocab v;
  v.kind = VocabKind::SentencePiece;
  v.source_path = path;
  size_t pos = 4;
  while (pos < size) {
    const size_t i = v.tokens.size();
    if (size - pos < 8) fail("{}: truncated at token {} ({} trailing bytes)", path, i, size - pos);
    float score;
    std::memcpy(&score, bytes.data() + pos, 4);
    const int32_t len = read_i32(bytes.data() + pos + 4);
    pos += 8;
    if (!std::isfinite(score)) fail("{}: token {} has a non-finite score", path, i);
    if (len < 0) fail("{}: token {} has a negative length {}", path, i, len);
    if (len > max_len)
      fail("{}: token {} has length {}, more than max_token_length {}", path, i, len, max_len);
    if (size_t(len) > size - pos)
      fail("{}: truncated at token {} (length {}, {} bytes left)", path, i, len, size - pos);
    std::string piece(bytes.substr(pos, size_t(len)));
    pos += size_t(len);
    if (i == 1 || i == 2) {  // "\n<s>\n" -> "<s>"
      while (!piece.empty() && piece.front() == '\n') piece.erase(0, 1);
      while (!piece.empty() && piece.back() == '\n') piece.pop_back();
    }
    std::string restored;
    restored.reserve(piece.size() + 8);
    for (char c : piece) {
      if (c == ' ')
        restored += kSpaceMark;
      else
        restored += c;
    }
    int32_t type = kNormal;
    if (i == 0)
      type = kUnknown;
    else if (i == 1 || i == 2)
      type = kControl;
    else if (parse_byte_token(restored) >= 0)
      type = kByte;
    v.tokens.push_back(std::move(restored));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  if (v.tokens.size() < 3)
    fail("{}: only {} tokens; a llama2.c tokenizer has <unk>, <s>, </s> first", path, v.tokens.size());
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  return v;
}

// --- SentencePiece ModelProto -------------------------------------------------------------
namespace {

class WireReader {
 public:
  explicit WireReader(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}
  bool done() const { return p_ == end_; }
  bool varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      const auto b = static_cast<unsigned char>(*p_++);
      *v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  // Reads the next field header; for length-delimited fields also the payload.
  bool field(uint32_t* number, uint32_t* wire, uint64_t* value, std::string_view* payload) {
    uint64_t tag;
    if (!varint(&tag)) return false;
    *number = uint32_t(tag >> 3);
    *wire = uint32_t(tag & 7);
    switch (*wire) {
      case 0:
        return varint(value);
      case 1:
        return skip(8);
      case 5:
        return skip(4);
      case 2: {
        uint64_t len;
        if (!varint(&len) || len > uint64_t(end_ - p_)) return false;
        *payload = std::string_view(p_, size_t(len));
        p_ += len;
        return true;
      }
      default:
        return false;  // groups are not used by SentencePiece
    }
  }

 private:
  bool skip(size_t n) {
    if (size_t(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }
  const char* p_;
  const char* end_;
};

// Field numbers from sentencepiece_model.proto.
constexpr uint32_t kModelPieces = 1, kModelTrainerSpec = 2, kModelNormalizerSpec = 3;
constexpr uint32_t kPieceType = 3, kTrainerModelType = 3, kNormalizerAddDummyPrefix = 3;
constexpr int kSpmUserDefined = 4;  // SentencePiece.Type USER_DEFINED

// Finds one varint field in a sub-message; returns false on malformed input.
bool find_varint(std::string_view msg, uint32_t wanted, uint64_t* out) {
  WireReader r(msg);
  while (!r.done()) {
    uint32_t num, wire;
    uint64_t value = 0;
    std::string_view payload;
    if (!r.field(&num, &wire, &value, &payload)) return false;
    if (num == wanted && wire == 0) *out = value;
  }
  return true;
}

const char* spm_model_type_name(int t) {
  switch (t) {
    case 1:
      return "unigram";
    case 2:
      return "bpe";
    case 3:
      return "word";
    case 4:
      return "char";
    default:
      return "unknown";
  }
}

}  // namespace

bool scan_sentencepiece_proto(std::string_view bytes, SpmProtoFacts* facts) {
  WireReader r(bytes);
  while (!r.done()) {
    uint32_t num, wire;
    uint64_t value = 0;
    std::string_view payload;
    if (!r.field(&num, &wire, &value, &payload)) return false;
    if (wire != 2) continue;
    uint64_t v = 0;
    if (num == kModelPieces) {
      v = 1;  // NORMAL
      if (!find_varint(payload, kPieceType, &v)) return false;
      facts->piece_types.push_back(int32_t(v));
    } else if (num == kModelTrainerSpec) {
      v = uint64_t(facts->model_type);
      if (!find_varint(payload, kTrainerModelType, &v)) return false;
      facts->model_type = int(v);
    } else if (num == kModelNormalizerSpec) {
      v = facts->add_dummy_prefix ? 1 : 0;
      if (!find_varint(payload, kNormalizerAddDummyPrefix, &v)) return false;
      facts->add_dummy_prefix = v != 0;
    }
  }
  return true;
}

Vocab load_sentencepiece_model(const std::string& path, std::string_view bytes) {
  SpmProtoFacts facts;
  if (!scan_sentencepiece_proto(bytes, &facts) || facts.piece_types.empty())
    fail("{}: not a SentencePiece model (not a ModelProto with pieces)", path);
  // Only BPE models can be re-encoded by our own SentencePiece algorithm once the
  // vocabulary has been copied into another format.
  if (facts.model_type != 2)
    fail("{}: SentencePiece model type '{}' is not supported (only bpe)", path,
         spm_model_type_name(facts.model_type));
  const SpmModel sp(path, bytes);
  const int n = sp.size();
  Vocab v;
  v.kind = VocabKind::SentencePiece;
  v.source_path = path;
  v.tokens.reserve(size_t(n));
  for (int id = 0; id < n; ++id) {
    v.tokens.push_back(sp.piece(id));
    v.scores.push_back(sp.score(id));
    // lcq_spm types use the proto's numbering, as do ours (GGUF's token types).
    int32_t type = int32_t(sp.type(id));
    if (type == kNormal && facts.piece_types.size() == size_t(n) &&
        facts.piece_types[size_t(id)] == kSpmUserDefined)
      type = kUserDefined;
    v.types.push_back(type);
  }
  v.unk_id = sp.unk_id();
  v.bos_id = sp.bos_id();
  v.eos_id = sp.eos_id();
  v.pad_id = sp.pad_id();
  v.add_bos = v.bos_id >= 0;
  v.add_eos = false;
  v.add_space_prefix = facts.add_dummy_prefix;
  return v;
}

}  // namespace detail

Vocab load_vocab_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: no such tokenizer file", path);
  if (!fs::is_regular_file(path, ec)) fail("{}: not a regular file", path);
  const auto file = MappedFile::open(path);
  return load_vocab_bytes(path, std::string_view(reinterpret_cast<const char*>(file->data()), file->size()));
}

Vocab load_vocab_bytes(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  if (bytes.empty()) fail("{}: empty file", path);
  if (bytes.size() > (size_t(1) << 30))
    fail("{}: {} bytes is too large for a tokenizer file", path, bytes.size());
  if (bytes.substr(0, 4) == "GGUF")
    fail("{}: is a GGUF model; its tokenizer is read together with the model", path);

  std::string ext = fs::path(path).extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  const bool looks_json = first != std::string_view::npos && bytes[first] == '{';

  if (ext == ".json" || (ext != ".bin" && ext != ".model" && looks_json))
    return detail::load_hf_tokenizer_json(path, bytes);
  if (ext == ".model") return detail::load_sentencepiece_model(path, bytes);
  if (ext == ".bin") return detail::load_llama2c_vocab(path, bytes);
  // Unknown name: a ModelProto starts with field 1 (pieces), length-delimited: byte 0x0A.
  detail::SpmProtoFacts facts;
  if (bytes[0] == 0x0A && detail::scan_sentencepiece_proto(bytes, &facts) && !facts.piece_types.empty()) {
    try {
      return detail::load_sentencepiece_model(path, bytes);
    } catch (const Error&) {
      // A tokenizer.bin whose max_token_length is 10 also starts with 0x0A.
    }
  }
  return detail::load_llama2c_vocab(path, bytes);
}

}  // namespace lcq::tokenizer
