// stories260K end to end, as the quantizer tests use it: the model, calibration windows from
// the first half of the TinyStories validation text and evaluation on the second half.
#pragma once

#include "lcq/model/loader.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/quantize.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace lcq::test {

model::LoadedModel load_stories();  // dense float runtime, its own tokenizer
torch::Tensor stories_calibration(const model::LoadedModel& m, int64_t nsamples = 16, int64_t seqlen = 128);
std::vector<int> stories_eval_tokens(const model::LoadedModel& m);
// Perplexity on 8 windows of 256 tokens of stories_eval_tokens (the figures in BENCHMARKS.md).
double stories_ppl(const model::Model& m, const std::vector<int>& eval_tokens);
double stories_ppl(const model::LoadedModel& m);

quant::LcqOptions rtn_options(int bits, int group, int dq_bits);  // rank one, min-max start
// quantize_model options for `method` at bits / group, `epochs` for trained methods, quiet.
quant::QuantizeOptions stories_options(const std::string& method, int bits, int group, int epochs = 3);
// Perplexity (stories_ppl) of stories260K quantized with RTN at bits / group: the baseline a
// trained method must beat.
double stories_rtn_ppl(int bits, int group, const std::vector<int>& eval_tokens);
std::vector<float> to_vec(const torch::Tensor& t);               // any dtype, as floats

}  // namespace lcq::test
