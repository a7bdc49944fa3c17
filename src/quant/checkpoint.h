// The checkpoint of a streamed quantization (lcq quantize --resume): the finished blocks and
// the engine's state after the last of them, in a directory next to the output
// (OUT.gguf.lcq-resume/), so that an interrupted run continues after its last finished block
// and writes the same bytes as an uninterrupted one. Private to src/quant.
//
//   run.json        {"fingerprint": the run's identity (command line, inputs), "blocks": n}
//   block-<l>.gguf  block l: its stored layers (the codebook tensors of the model file) with
//                   their parameters, its final norms and biases, its report
//   state.gguf      EngineState after the last finished block (its next_block says which)
// Every file is written atomically, a block's before the state that counts it, so a run
// killed at any instant leaves a consistent checkpoint.
#pragma once

#include "lcq/io/gguf.h"
#include "lcq/kernels/codebook_layer.h"
#include "lcq/model/model.h"
#include "lcq/quant/reconstruct.h"

#include <map>
#include <memory>
#include <string>

namespace lcq::quant {

class ActivationStore;

class Checkpoint {
 public:
  // resume = false: starts a new checkpoint; refuses when `dir` holds finished blocks (the
  // user would lose them: --resume continues, deleting the directory starts over).
  // resume = true: continues the one in `dir` after checking that it is this run's (same
  // fingerprint and block count); a missing or empty one starts from block 0.
  Checkpoint(std::string dir, std::string fingerprint, int n_blocks, bool resume);

  const std::string& dir() const { return dir_; }
  int finished() const { return finished_; }  // blocks finished (0: nothing to resume)

  // The state saved after block finished() - 1; activations are allocated in `acts` (in memory
  // when null).
  EngineState state(const ActivationStore* acts) const;

  void save_block(int l, const model::Block& block, const std::map<std::string, CodebookLayer>& layers,
                  const BlockReport& report);
  void save_state(const EngineState& s);

  // Block l's file (mapped) and what it holds.
  std::shared_ptr<const io::GgufFile> block_file(int l) const;
  BlockReport report(int l) const;
  // The block's layers by name, with their parameters (shape, bits, group, rank, double
  // quantization) but no data: what the model file's metadata is made of.
  std::map<std::string, CodebookLayer> layer_parameters(int l) const;

  void remove();  // the run succeeded: nothing to resume

 private:
  std::string path(const std::string& file) const { return dir_ + "/" + file; }
  std::string block_path(int l) const;

  std::string dir_, fingerprint_;
  int n_blocks_ = 0;
  int finished_ = 0;
};

}  // namespace lcq::quant
