// Where the reconstruction engine keeps the calibration activations: a few sets of
// [samples, seqlen, dim] values at a time, in memory, or (--offload-activations DIR) in files
// on disk mapped into memory, for calibration sets larger than the memory. Mapped files let
// the kernel write pages back and drop them under memory pressure instead of failing; the
// engine also drops a set's pages from its resident set after each pass over it.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

namespace lcq::quant {

class ActivationStore {
 public:
  // dir empty: in memory. Else the directory must exist; its files are unlinked as soon as
  // they are mapped, so nothing is left behind, whatever ends the process.
  explicit ActivationStore(std::string dir = {});

  bool offloaded() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }

  // A new, uninitialized contiguous tensor (disk space reserved up front when offloaded: a
  // full disk is an error here, not a crash later).
  torch::Tensor empty(at::IntArrayRef shape, torch::ScalarType dtype) const;
  // A contiguous copy of t in this store (t itself when in memory and contiguous).
  torch::Tensor adopt(const torch::Tensor& t) const;
  // Offloaded: drops t's pages from this process's resident memory (their contents stay in
  // the file and are read back on the next access). No-op for a tensor in memory.
  void release(const torch::Tensor& t) const;

 private:
  std::string dir_;
  std::shared_ptr<std::map<const void*, size_t>> mappings_;  // base -> length of live mappings
};

}  // namespace lcq::quant
