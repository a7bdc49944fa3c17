// Files that are never left half-written: data goes to "<path>.tmp-<pid>" and is renamed
// over <path> only by commit(). If the writer is destroyed without commit (an exception)
// or the process receives SIGINT, SIGTERM, SIGHUP or SIGQUIT, the temporary file is removed
// (a signal the process ignores, e.g. SIGHUP under nohup, stays ignored).
//
// Where the data lands:
// - <path> a symlink to an existing file: the target is replaced (the link stays a link).
// - <path> an existing character device, FIFO or socket (/dev/null, a named pipe), or a path
//   under /dev or /proc (/dev/stdout): written directly, without a temporary file. Renaming a
//   regular file over a device would replace the device itself (as root, /dev/null).
// - otherwise: the temporary file next to <path>, renamed over it. Temporary files of the
//   same <path> left by a process that no longer exists (killed by SIGKILL or a power loss)
//   are removed when the path is written again.
// Errors name <path>, never the temporary file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lcq {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void pad_to(size_t alignment);  // zero bytes up to a multiple of alignment
  size_t bytes_written() const { return written_; }
  const std::string& path() const { return path_; }
  // Flush, fsync and rename into place. Throws lcq::Error on failure.
  void commit();

 private:
  std::string path_;      // what the user named (messages)
  std::string target_;    // the file replaced (path_, or its symlink's target)
  std::string tmp_path_;  // empty when writing directly
  std::FILE* f_ = nullptr;
  size_t written_ = 0;
  bool committed_ = false;
};

// True when `path` is written in place rather than through a temporary file (see above).
bool writes_directly(const std::string& path);

// Removes "<path>.tmp-<pid>" files whose process no longer exists; returns how many.
int remove_stale_temporaries(const std::string& path);

// Write a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// Whole files (texts, JSON) are read into memory; larger ones are refused rather than read
// until the memory runs out. No real text is near this size (WikiText-103 is 0.5 GB).
constexpr uint64_t kMaxReadBytes = uint64_t(1) << 30;  // 1 GiB
// Read a whole regular file or FIFO (a pipe, /dev/stdin) of at most max_bytes; throws
// lcq::Error naming the path for a directory, a device (/dev/zero) or a larger file.
std::string read_file(const std::string& path, uint64_t max_bytes = kMaxReadBytes);

}  // namespace lcq
