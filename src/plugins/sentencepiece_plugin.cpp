// lcq's SentencePiece plugin: a thin C wrapper over libsentencepiece (see the header for why
// it is a separately loaded module).
#include "sentencepiece_plugin.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <string>
#include <vector>

struct lcq_spm {
  sentencepiece::SentencePieceProcessor processor;
  std::vector<int> ids;
};

namespace {
void set_error(char* err, size_t err_size, const std::string& message) {
  if (err && err_size) std::snprintf(err, err_size, "%s", message.c_str());
}
}  // namespace

extern "C" {

lcq_spm* lcq_spm_load(const char* proto, size_t size, char* err, size_t err_size) {
  try {
    auto* sp = new lcq_spm;
    const auto status = sp->processor.LoadFromSerializedProto(std::string(proto, size));
    if (!status.ok()) {
      set_error(err, err_size, status.ToString());
      delete sp;
      return nullptr;
    }
    return sp;
  } catch (const std::exception& e) {
    set_error(err, err_size, e.what());
    return nullptr;
  }
}

void lcq_spm_free(lcq_spm* sp) { delete sp; }

int lcq_spm_piece_size(const lcq_spm* sp) { return sp->processor.GetPieceSize(); }

const char* lcq_spm_piece(const lcq_spm* sp, int id, size_t* size) {
  const std::string& piece = sp->processor.IdToPiece(id);
  *size = piece.size();
  return piece.data();
}

float lcq_spm_score(const lcq_spm* sp, int id) { return sp->processor.GetScore(id); }

int lcq_spm_type(const lcq_spm* sp, int id) {
  const auto& p = sp->processor;
  if (p.IsUnknown(id)) return LCQ_SPM_UNKNOWN;
  if (p.IsControl(id)) return LCQ_SPM_CONTROL;
  if (p.IsUnused(id)) return LCQ_SPM_UNUSED;
  if (p.IsByte(id)) return LCQ_SPM_BYTE;
  return LCQ_SPM_NORMAL;  // user-defined pieces are told apart by the caller's proto scan
}

int lcq_spm_special_id(const lcq_spm* sp, int which) {
  const auto& p = sp->processor;
  switch (which) {
    case 0: return p.unk_id();
    case 1: return p.bos_id();
    case 2: return p.eos_id();
    case 3: return p.pad_id();
    default: return -1;
  }
}

int lcq_spm_encode(lcq_spm* sp, const char* text, size_t size, const int** ids, size_t* count,
                   char* err, size_t err_size) {
  try {
    sp->ids.clear();
    const auto status = sp->processor.Encode(std::string(text, size), &sp->ids);
    if (!status.ok()) {
      set_error(err, err_size, status.ToString());
      return 1;
    }
    *ids = sp->ids.data();
    *count = sp->ids.size();
    return 0;
  } catch (const std::exception& e) {
    set_error(err, err_size, e.what());
    return 1;
  }
}

}  // extern "C"
