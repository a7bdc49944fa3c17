#include "spm_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "../plugins/sentencepiece_plugin.h"
#include "lcq/core/error.h"

namespace lcq::tokenizer::detail {
namespace {

constexpr const char* kPluginName = "liblcq_sentencepiece.so";

// AddressSanitizer refuses RTLD_DEEPBIND (it would bypass its interceptors), so sanitizer
// builds (scripts/sanitize.sh, the fuzzers) open the plugin without it; there a process that
// also loads libtorch's protobuf may see the clash that DEEPBIND avoids.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDeepBind = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

struct PluginApi {
  decltype(&lcq_spm_load) load = nullptr;
  decltype(&lcq_spm_free) free = nullptr;
  decltype(&lcq_spm_piece_size) piece_size = nullptr;
  decltype(&lcq_spm_piece) piece = nullptr;
  decltype(&lcq_spm_score) score = nullptr;
  decltype(&lcq_spm_type) type = nullptr;
  decltype(&lcq_spm_special_id) special_id = nullptr;
  decltype(&lcq_spm_encode) encode = nullptr;
  std::string error;  // why loading failed, empty on success
};

// Where the plugin may be: $LCQ_SPM_PLUGIN, next to the running executable, the build tree.
std::vector<std::string> candidate_paths() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("LCQ_SPM_PLUGIN"); env && *env) paths.emplace_back(env);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    paths.push_back((exe.parent_path() / kPluginName).string());
    paths.push_back((exe.parent_path().parent_path() / "lib" / kPluginName).string());
  }
#ifdef LCQ_SPM_PLUGIN_PATH
  paths.emplace_back(LCQ_SPM_PLUGIN_PATH);
#endif
  return paths;
}

template <typename F>
bool bind(void* lib, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(lib, name));
  return *f != nullptr;
}

const PluginApi& plugin() {
  static PluginApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    for (const auto& path : candidate_paths()) {
      if (access(path.c_str(), R_OK) != 0) continue;
      // RTLD_DEEPBIND: libsentencepiece resolves its embedded protobuf before libtorch's.
      void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | kDeepBind);
      if (!lib) {
        tried += std::string(tried.empty() ? "" : "; ") + dlerror();
        continue;
      }
      if (bind(lib, "lcq_spm_load", &api.load) && bind(lib, "lcq_spm_free", &api.free) &&
          bind(lib, "lcq_spm_piece_size", &api.piece_size) && bind(lib, "lcq_spm_piece", &api.piece) &&
          bind(lib, "lcq_spm_score", &api.score) && bind(lib, "lcq_spm_type", &api.type) &&
          bind(lib, "lcq_spm_special_id", &api.special_id) && bind(lib, "lcq_spm_encode", &api.encode))
        return;
      tried += (tried.empty() ? "" : "; ") + path + " lacks the lcq_spm_* functions";
    }
    api.error = tried.empty() ? std::string(kPluginName) + " was not found (set LCQ_SPM_PLUGIN to its path)"
                              : tried;
  });
  return api;
}

}  // namespace

SpmModel::SpmModel(const std::string& path, std::string_view proto) : path_(path) {
  const PluginApi& api = plugin();
  if (!api.error.empty()) fail("{}: SentencePiece .model files need lcq's SentencePiece plugin: {}", path, api.error);
  char err[512] = {0};
  handle_ = api.load(proto.data(), proto.size(), err, sizeof err);
  if (!handle_) fail("{}: not a valid SentencePiece model: {}", path, err);
}

SpmModel::~SpmModel() {
  if (handle_) plugin().free(handle_);
}

int SpmModel::size() const { return plugin().piece_size(handle_); }
std::string SpmModel::piece(int id) const {
  size_t n = 0;
  const char* p = plugin().piece(handle_, id, &n);
  return std::string(p, n);
}
float SpmModel::score(int id) const { return plugin().score(handle_, id); }
int SpmModel::type(int id) const { return plugin().type(handle_, id); }
int SpmModel::unk_id() const { return plugin().special_id(handle_, 0); }
int SpmModel::bos_id() const { return plugin().special_id(handle_, 1); }
int SpmModel::eos_id() const { return plugin().special_id(handle_, 2); }
int SpmModel::pad_id() const { return plugin().special_id(handle_, 3); }

void SpmModel::encode(std::string_view text, std::vector<int>& out) const {
  const int* ids = nullptr;
  size_t n = 0;
  char err[512] = {0};
  std::lock_guard<std::mutex> lock(encode_mutex_);
  if (plugin().encode(handle_, text.data(), text.size(), &ids, &n, err, sizeof err) != 0)
    fail("{}: SentencePiece failed to encode: {}", path_, err);
  out.insert(out.end(), ids, ids + n);
}

}  // namespace lcq::tokenizer::detail
