#include "lcq/core/atomic_file.h"

#include "lcq/core/error.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unistd.h>
#include <vector>

namespace lcq {
namespace {

// Temporary files currently open, so a signal handler can remove them. Fixed-size array of
// C strings: the handler may only call async-signal-safe functions (unlink, signal, raise).
constexpr int kMaxTemp = 16;
char g_temp_paths[kMaxTemp][4096];
volatile sig_atomic_t g_temp_used[kMaxTemp];
std::mutex g_temp_mutex;

void on_signal(int sig) {
  for (int i = 0; i < kMaxTemp; ++i)
    if (g_temp_used[i]) unlink(g_temp_paths[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int register_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  static bool installed = false;
  if (!installed) {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    installed = true;
  }
  for (int i = 0; i < kMaxTemp; ++i) {
    if (!g_temp_used[i] && path.size() < sizeof(g_temp_paths[i])) {
      std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
      g_temp_used[i] = 1;
      return i;
    }
  }
  return -1;
}

void unregister_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  for (int i = 0; i < kMaxTemp; ++i)
    if (g_temp_used[i] && path == g_temp_paths[i]) g_temp_used[i] = 0;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_path_ = path_ + ".tmp-" + std::to_string(getpid());
  register_temp(tmp_path_);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) {
    unregister_temp(tmp_path_);
    fail("{}: cannot create: {}", tmp_path_, std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_) {
    std::remove(tmp_path_.c_str());
    unregister_temp(tmp_path_);
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n) fail("{}: write failed: {}", tmp_path_, std::strerror(errno));
  written_ += n;
}

void AtomicFile::pad_to(size_t alignment) {
  static const char zeros[64] = {};
  size_t pad = (alignment - written_ % alignment) % alignment;
  while (pad > 0) {
    size_t n = std::min(pad, sizeof(zeros));
    write(zeros, n);
    pad -= n;
  }
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    fail("{}: flush failed: {}", tmp_path_, std::strerror(errno));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename into place: {}", path_, std::strerror(errno));
  committed_ = true;
  unregister_temp(tmp_path_);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace lcq
