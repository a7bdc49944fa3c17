#include "lcq/core/paths.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lcq {
namespace {

namespace fs = std::filesystem;

fs::path normalized(const std::string& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  if (ec) abs = fs::path(p);
  fs::path canon = fs::weakly_canonical(abs, ec);
  fs::path n = ec ? abs.lexically_normal() : canon.lexically_normal();
  // "out/" and "out" are one path (a directory output spelled with a slash, a file without).
  if (!n.has_filename() && n.has_parent_path() && n != n.root_path()) n = n.parent_path();
  return n;
}

bool exists(const std::string& p, struct stat* st) { return ::stat(p.c_str(), st) == 0; }

bool is_char_device(const std::string& p) {
  struct stat st {};
  return exists(p, &st) && S_ISCHR(st.st_mode);
}

bool is_existing_directory(const std::string& p) {
  struct stat st {};
  return exists(p, &st) && S_ISDIR(st.st_mode);
}

// Creates and removes a file in `dir`: the honest test that we may write there (permission
// bits say nothing for root, nor for a read-only mount or a full quota).
void probe_directory(const std::string& path, const fs::path& dir) {
  std::string tmpl = (dir / ".lcq-write-probe-XXXXXX").string();
  const int fd = mkstemp(tmpl.data());
  if (fd < 0) fail("{}: cannot create files in {}: {}", path, dir.string(), std::strerror(errno));
  ::close(fd);
  ::unlink(tmpl.c_str());
}

std::string joined(const std::string& dir, const std::string& file) { return (fs::path(dir) / file).string(); }

}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  const bool ea = exists(a, &sa), eb = exists(b, &sb);
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea != eb) return false;
  return normalized(a) == normalized(b);
}

bool is_within(const std::string& path, const std::string& dir) {
  if (same_file(path, dir)) return true;
  const fs::path p = normalized(path), d = normalized(dir);
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty() && std::next(di) == d.end()) break;  // "dir/" ends with an empty element
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

void check_output_file(const std::string& path) {
  LCQ_CHECK(!path.empty(), "an output path is empty");
  struct stat st {};
  if (exists(path, &st)) {
    LCQ_CHECK(!S_ISDIR(st.st_mode), "{}: is a directory, not a file", path);
    if (!S_ISREG(st.st_mode)) {  // a device or FIFO: written in place
      LCQ_CHECK(::access(path.c_str(), W_OK) == 0, "{}: cannot write: {}", path, std::strerror(errno));
      return;
    }
  } else if (writes_directly(path)) {
    fail("{}: does not exist (below /dev and /proc only existing files are written)", path);
  }
  std::error_code ec;
  // A symlink to an existing file: its target is replaced, in the target's directory.
  const fs::path target = exists(path, &st) ? fs::canonical(path, ec) : fs::path(path);
  const fs::path dir = ec ? fs::path(path).parent_path() : target.parent_path();
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  if (!exists(d.string(), &st)) fail("{}: the directory {} does not exist", path, d.string());
  LCQ_CHECK(S_ISDIR(st.st_mode), "{}: {} is not a directory", path, d.string());
  probe_directory(path, d);
}

void check_output_directory(const std::string& dir) {
  LCQ_CHECK(!dir.empty(), "an output directory is empty");
  struct stat st {};
  if (exists(dir, &st)) {
    LCQ_CHECK(S_ISDIR(st.st_mode), "{}: exists and is not a directory", dir);
    probe_directory(dir, fs::path(dir));
    return;
  }
  // Created with its missing parents: the nearest existing ancestor must take new entries.
  fs::path p = fs::absolute(dir).lexically_normal();
  while (p.has_relative_path() && !exists(p.string(), &st)) p = p.parent_path();
  LCQ_CHECK(exists(p.string(), &st) && S_ISDIR(st.st_mode), "{}: cannot be created: {} is not a directory", dir,
            p.string());
  probe_directory(dir, p);
}

void FilePlan::input(const std::string& what, const std::string& path) {
  if (!path.empty()) inputs_.push_back({what, path, false, {}});
}

void FilePlan::output_file(const std::string& what, const std::string& path) {
  if (!path.empty()) outputs_.push_back({what, path, false, {}});
}

void FilePlan::output_directory(const std::string& what, const std::string& dir, std::vector<std::string> files) {
  if (!dir.empty()) outputs_.push_back({what, dir, true, std::move(files)});
}

void FilePlan::check() const {
  // Whether output `o` would write over the existing file or directory `in`.
  auto replaces = [](const Entry& o, const std::string& in) {
    if (!o.directory) return same_file(o.path, in);
    if (o.files.empty()) return is_within(in, o.path);
    struct stat st {};
    for (const auto& f : o.files) {
      if (is_within(in, joined(o.path, f))) return true;  // one of its files, or inside one of its subdirectories
      // The input directory itself, whose files it would replace (an export onto its own model).
      if (is_existing_directory(in) && same_file(o.path, in) && exists(joined(o.path, f), &st)) return true;
    }
    return false;
  };
  for (const Entry& o : outputs_)
    for (const Entry& in : inputs_)
      LCQ_CHECK(!replaces(o, in.path), "{} {} would overwrite {} {}; choose another path", o.what, o.path, in.what,
                in.path);
  for (size_t i = 0; i < outputs_.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const Entry &a = outputs_[i], &b = outputs_[j];
      if (is_char_device(a.path) && is_char_device(b.path)) continue;  // /dev/null twice destroys nothing
      bool clash = same_file(a.path, b.path);
      for (const Entry* d : {&a, &b}) {
        const Entry& other = d == &a ? b : a;
        if (d->directory && !other.directory) {
          if (d->files.empty()) clash = clash || is_within(other.path, d->path);
          for (const auto& f : d->files) clash = clash || is_within(other.path, joined(d->path, f));
        }
      }
      LCQ_CHECK(!clash, "{} {} and {} {} are the same file; give them different paths", a.what, a.path, b.what, b.path);
    }
  for (const Entry& o : outputs_) {
    try {
      if (o.directory)
        check_output_directory(o.path);
      else
        check_output_file(o.path);
    } catch (const Error& e) {
      fail("{} {}", o.what, e.what());
    }
  }
}

std::string content_fingerprint(const std::string& path) {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  LCQ_CHECK(state && XXH3_64bits_reset(state.get()) == XXH_OK, "out of memory");
  std::vector<char> buf(1 << 20);
  auto add_file = [&](const std::string& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open: {}", file, std::strerror(errno));
    struct stat st {};
    const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ssize_t n = 0;
    while (regular && (n = ::read(fd, buf.data(), buf.size())) != 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      XXH3_64bits_update(state.get(), buf.data(), size_t(n));
    }
    const int err = errno;
    ::close(fd);
    LCQ_CHECK(regular, "{}: not a regular file", file);
    LCQ_CHECK(n == 0, "{}: read failed: {}", file, std::strerror(err));
  };
  if (is_existing_directory(path)) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_regular_file()) files.push_back(it->path());
    LCQ_CHECK(!ec, "{}: cannot list: {}", path, ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const std::string name = f.filename().string();
      XXH3_64bits_update(state.get(), name.c_str(), name.size() + 1);
      add_file(f.string());
    }
  } else {
    add_file(path);
  }
  return fmt::format("{:016x}", XXH3_64bits_digest(state.get()));
}

}  // namespace lcq
