// libsentencepiece, reached through lcq's plugin (src/plugins/sentencepiece_plugin.h explains
// why it is loaded with dlopen instead of linked).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

struct lcq_spm;

namespace lcq::tokenizer::detail {

class SpmModel {
 public:
  // Parses a serialized ModelProto; `path` names it in error messages.
  SpmModel(const std::string& path, std::string_view proto);
  ~SpmModel();
  SpmModel(const SpmModel&) = delete;
  SpmModel& operator=(const SpmModel&) = delete;

  int size() const;
  std::string piece(int id) const;
  float score(int id) const;
  int type(int id) const;  // LCQ_SPM_* (normal, unknown, control, unused, byte)
  int unk_id() const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  // Thread-safe (serialised: the plugin reuses one id buffer per model).
  void encode(std::string_view text, std::vector<int>& out) const;

 private:
  std::string path_;
  lcq_spm* handle_ = nullptr;
  mutable std::mutex encode_mutex_;
};

}  // namespace lcq::tokenizer::detail
