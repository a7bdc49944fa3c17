// Read-only memory map of a whole file, shared by everything that views into it, so
// weights are never copied just to be read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lcq {

class MappedFile {
 public:
  // Throws lcq::Error naming the path if the file cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  // A copy of `size` bytes that parsers read as the file `path` (the name their errors give):
  // the fuzzers parse buffers through the same code as files. The copy is exactly `size`
  // bytes long, so a read past its end is one that AddressSanitizer sees.
  static std::shared_ptr<const MappedFile> from_bytes(const std::string& path, const void* data, size_t size);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::unique_ptr<uint8_t[]> copy_;  // from_bytes(): the bytes (data_ points here, nothing is mapped)
};

// Drops from the resident set the pages of a read-only file mapping that [data, data + n)
// fully covers (the data stays in the file and is read again if touched); partly covered
// pages are kept. Only for mapped files: on other memory MADV_DONTNEED discards the contents.
void release_file_pages(const void* data, size_t n);

// Bounds-checked sequential reader over a byte range; errors name the file and offset.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string path)
      : data_(data), size_(size), path_(std::move(path)) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }
  void seek(size_t pos);
  const uint8_t* take(size_t n, const char* what);  // pointer to n bytes, advances
  template <typename T>
  T read(const char* what) {
    T v;
    const uint8_t* p = take(sizeof(T), what);
    __builtin_memcpy(&v, p, sizeof(T));
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string path_;
};

}  // namespace lcq
