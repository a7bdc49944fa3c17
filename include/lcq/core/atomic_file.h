// Files that are never left half-written: data goes to "<path>.tmp-<pid>" and is renamed
// over <path> only by commit(). If the writer is destroyed without commit (an exception)
// or the process receives SIGINT/SIGTERM, the temporary file is removed.
#pragma once

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
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  size_t written_ = 0;
  bool committed_ = false;
};

// Write a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);
// Read a whole file; throws lcq::Error naming the path.
std::string read_file(const std::string& path);

}  // namespace lcq
