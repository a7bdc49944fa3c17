#include "lcq/quant/activations.h"

#include "lcq/core/error.h"

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace lcq::quant {

namespace {
std::mutex g_mappings_mutex;
}  // namespace

ActivationStore::ActivationStore(std::string dir)
    : dir_(std::move(dir)), mappings_(std::make_shared<std::map<const void*, size_t>>()) {
  if (dir_.empty()) return;
  std::error_code ec;
  LCQ_CHECK(std::filesystem::is_directory(dir_, ec), "{}: --offload-activations needs an existing directory", dir_);
}

torch::Tensor ActivationStore::empty(at::IntArrayRef shape, torch::ScalarType dtype) const {
  if (!offloaded()) return torch::empty(shape, dtype);
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t bytes = size_t(numel) * c10::elementSize(dtype);
  if (bytes == 0) return torch::empty(shape, dtype);
  std::string name = dir_ + "/lcq-activations-XXXXXX";
  const int fd = mkstemp(name.data());
  LCQ_CHECK(fd >= 0, "{}: cannot create an activation file: {}", dir_, std::strerror(errno));
  const int err = posix_fallocate(fd, 0, off_t(bytes));
  void* p = err == 0 ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  const int map_errno = errno;
  unlink(name.c_str());
  close(fd);
  LCQ_CHECK(err == 0, "{}: cannot reserve {} bytes for calibration activations: {}", dir_, bytes, std::strerror(err));
  LCQ_CHECK(p != MAP_FAILED, "{}: cannot map an activation file: {}", dir_, std::strerror(map_errno));
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    (*mappings_)[p] = bytes;
  }
  auto mappings = mappings_;
  return torch::from_blob(
      p, shape,
      [bytes, mappings](void* q) {
        {
          std::lock_guard<std::mutex> lock(g_mappings_mutex);
          mappings->erase(q);
        }
        munmap(q, bytes);
      },
      torch::TensorOptions().dtype(dtype));
}

torch::Tensor ActivationStore::adopt(const torch::Tensor& t) const {
  if (!offloaded()) return t.contiguous();
  torch::Tensor out = empty(t.sizes(), t.scalar_type());
  out.copy_(t);
  return out;
}

void ActivationStore::release(const torch::Tensor& t) const {
  if (!offloaded() || !t.defined() || !t.has_storage()) return;
  const void* base = t.storage().data();
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    auto it = mappings_->find(base);
    if (it == mappings_->end()) return;
    bytes = it->second;
  }
  madvise(const_cast<void*>(base), bytes, MADV_DONTNEED);  // a shared file mapping: the data stays in the file
}

}  // namespace lcq::quant
