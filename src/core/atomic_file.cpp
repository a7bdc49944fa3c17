#include "lcq/core/atomic_file.h"

#include "lcq/core/error.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lcq {
namespace {

namespace fs = std::filesystem;

// Temporary files currently open, so a signal handler can remove them. Fixed-size array of
// C strings: the handler may only call async-signal-safe functions (unlink, sigaction, raise).
constexpr int kMaxTemp = 16;
char g_temp_paths[kMaxTemp][4096];
volatile sig_atomic_t g_temp_used[kMaxTemp];
std::mutex g_temp_mutex;

// Signals that end the process by default and that a user or a terminal sends to stop it:
// Ctrl-C, kill, a closed terminal or ssh session, Ctrl-\.
constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

void on_signal(int sig) {
  for (int i = 0; i < kMaxTemp; ++i)
    if (g_temp_used[i]) unlink(g_temp_paths[i]);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);
}

void install_handlers() {
  for (int sig : kCleanupSignals) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) != 0) continue;
    // Only where the signal would kill the process anyway: an ignored signal (nohup's SIGHUP,
    // SIGINT of a background job) must stay ignored, and another handler stays in charge.
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      for (int s : kCleanupSignals) sigaddset(&sa.sa_mask, s);  // one cleanup at a time
      sigaction(sig, &sa, nullptr);
    }
  }
}

int register_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_temp_mutex);
  static bool installed = false;
  if (!installed) {
    install_handlers();
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

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool under_dev_or_proc(const fs::path& p) {
  const std::string s = p.string();
  return starts_with(s, "/dev/") || starts_with(s, "/proc/");
}

// The file a write replaces: the target of a symlink to an existing regular file, else path.
std::string replaced_file(const std::string& path) {
  struct stat lst {}, st {};
  if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode) && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    std::error_code ec;
    const fs::path target = fs::canonical(path, ec);
    if (!ec) return target.string();
  }
  return path;
}

}  // namespace

bool writes_directly(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return true;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec).lexically_normal();
  if (!ec && under_dev_or_proc(abs)) return true;
  const fs::path resolved = fs::weakly_canonical(path, ec);
  return !ec && under_dev_or_proc(resolved);
}

int remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = p.filename().string() + ".tmp-";
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.size() > prefix.size() + 10 || name.compare(0, prefix.size(), prefix) != 0)
      continue;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    const long pid = std::stol(digits);
    if (pid <= 0 || pid == long(getpid())) continue;
    // Alive (or not ours to signal: EPERM) means someone may still be writing it.
    if (kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code e2;
    if (fs::is_regular_file(fs::symlink_status(it->path(), e2)) && fs::remove(it->path(), e2)) ++removed;
  }
  return removed;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  LCQ_CHECK(!path_.empty(), "an output path is empty");
  struct stat st {};
  LCQ_CHECK(!(stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)), "{}: is a directory, not a file", path_);
  if (writes_directly(path_)) {
    target_ = path_;
    f_ = std::fopen(path_.c_str(), "wb");
    if (!f_) fail("{}: cannot open for writing: {}", path_, std::strerror(errno));
    return;
  }
  target_ = replaced_file(path_);
  remove_stale_temporaries(target_);
  tmp_path_ = target_ + ".tmp-" + std::to_string(getpid());
  register_temp(tmp_path_);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) {
    const int err = errno;
    unregister_temp(tmp_path_);
    fail("{}: cannot create: {}", path_, std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_ && !tmp_path_.empty()) {
    std::remove(tmp_path_.c_str());
    unregister_temp(tmp_path_);
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n) fail("{}: write failed: {}", path_, std::strerror(errno));
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
  if (tmp_path_.empty()) {  // a device or pipe: nothing to sync or rename
    const bool ok = std::fflush(f_) == 0;
    const int err = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok || !closed) fail("{}: write failed: {}", path_, std::strerror(ok ? errno : err));
    committed_ = true;
    return;
  }
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0) fail("{}: write failed: {}", path_, std::strerror(errno));
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!closed) fail("{}: write failed: {}", path_, std::strerror(errno));
  if (std::rename(tmp_path_.c_str(), target_.c_str()) != 0)
    fail("{}: cannot rename into place: {}", path_, std::strerror(errno));
  committed_ = true;
  unregister_temp(tmp_path_);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) fail("{}: cannot read: {}", path, std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("{}: is a directory, not a file", path);
  // Regular files, pipes and FIFOs (/dev/stdin from a pipe, <(...)) and a terminal; devices
  // such as /dev/zero or /dev/urandom never end.
  const bool readable = S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(fd);
  if (!readable)
    fail("{}: not a regular file ({}); give a file or a pipe", path,
         S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device" : "a special file");
  const auto too_large = [&] {
    std::string limit = fmt::format("{} bytes", max_bytes);
    for (const auto& [shift, unit] : {std::pair<int, const char*>{30, "GiB"}, {20, "MiB"}, {10, "KiB"}})
      if (max_bytes >= (uint64_t(1) << shift) && max_bytes % (uint64_t(1) << shift) == 0) {
        limit = fmt::format("{} {}", max_bytes >> shift, unit);
        break;
      }
    fail("{}: larger than {}, the limit of files read whole; is this the right file?", path, limit);
  };
  if (S_ISREG(st.st_mode) && uint64_t(st.st_size) > max_bytes) too_large();
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
  std::vector<char> buf(1 << 16);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: read failed: {}", path, std::strerror(errno));
    }
    if (n == 0) break;
    if (out.size() + size_t(n) > max_bytes) too_large();
    out.append(buf.data(), size_t(n));
  }
  return out;
}

}  // namespace lcq
