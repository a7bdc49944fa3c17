#include "lcq/core/mapped_file.h"

#include "lcq/core/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lcq {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("{}: cannot memory-map: {}", path, std::strerror(errno));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

std::shared_ptr<const MappedFile> MappedFile::from_bytes(const std::string& path, const void* data, size_t size) {
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size;
  if (size > 0) {
    f->copy_.reset(new uint8_t[size]);
    std::memcpy(f->copy_.get(), data, size);
    f->data_ = f->copy_.get();
  }
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && !copy_) munmap(const_cast<uint8_t*>(data_), size_);
}

void ByteReader::seek(size_t pos) {
  if (pos > size_) fail("{}: offset {} is past the end of the file ({} bytes): truncated or corrupt", path_, pos, size_);
  pos_ = pos;
}

const uint8_t* ByteReader::take(size_t n, const char* what) {
  if (n > size_ - pos_)
    fail("{}: truncated: {} needs {} bytes at offset {}, only {} left", path_, what, n, pos_, size_ - pos_);
  const uint8_t* p = data_ + pos_;
  pos_ += n;
  return p;
}

void release_file_pages(const void* data, size_t n) {
  const uintptr_t page = 4096;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + n) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace lcq
