// Text generation: prefill the prompt into a KV cache, then decode one token at a time.
#pragma once

#include "lcq/model/model.h"
#include "lcq/run/generate.h"

#include <functional>
#include <vector>

namespace lcq::model {

// Sampling and the options are the lean runtime's (no libtorch there).
using run::GenerateOptions;
using run::GenerateResult;
using run::Sampler;
using run::SamplerOptions;

// on_token is called with every generated token as soon as it exists (for streaming).
GenerateResult generate(const Model& model, const std::vector<int>& prompt, const GenerateOptions& opts,
                        const std::function<void(int)>& on_token = nullptr);

}  // namespace lcq::model
