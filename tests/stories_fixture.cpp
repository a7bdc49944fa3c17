#include "stories_fixture.h"

#include "lcq/eval/perplexity.h"
#include "lcq/quant/calibration.h"
#include "test_util.h"

namespace lcq::test {

model::LoadedModel load_stories() {
  io::LoadOptions lo;
  lo.tokenizer_path = stories_tok();
  model::RuntimeOptions rt;
  rt.packed = false;
  return model::load_model(stories_bin(), lo, rt);
}

namespace {
std::string stories_half(bool first) {
  const std::string text = read_bytes(tinystories());
  return first ? text.substr(0, text.size() / 2) : text.substr(text.size() / 2);
}
}  // namespace

torch::Tensor stories_calibration(const model::LoadedModel& m, int64_t nsamples, int64_t seqlen) {
  quant::CalibrationOptions co;
  co.nsamples = nsamples;
  co.seqlen = seqlen;
  return quant::sample_calibration(m.tok().encode(stories_half(true), true), co);
}

std::vector<int> stories_eval_tokens(const model::LoadedModel& m) { return m.tok().encode(stories_half(false), true); }

double stories_ppl(const model::Model& m, const std::vector<int>& eval_tokens) {
  eval::PerplexityOptions po;
  po.seqlen = 256;
  po.max_windows = 8;
  po.progress = false;
  return eval::perplexity(m, eval_tokens, po).ppl;
}

double stories_ppl(const model::LoadedModel& m) { return stories_ppl(m.model, stories_eval_tokens(m)); }

quant::QuantizeOptions stories_options(const std::string& method, int bits, int group, int epochs) {
  quant::QuantizeOptions o;
  o.method = quant::parse_method(method);
  o.lcq.bits = bits;
  o.lcq.group = group;
  o.engine.epochs = epochs;
  o.engine.progress = false;
  return o;
}

double stories_rtn_ppl(int bits, int group, const std::vector<int>& eval_tokens) {
  model::LoadedModel rtn = load_stories();
  quant::quantize_model(rtn.model, torch::Tensor(), stories_options("rtn", bits, group));
  return stories_ppl(rtn.model, eval_tokens);
}

quant::LcqOptions rtn_options(int bits, int group, int dq_bits) {
  quant::LcqOptions o;
  o.bits = bits;
  o.group = group;
  o.rank = 1;
  o.init = quant::LcqInit::kRtn;
  o.dq_bits = dq_bits;
  return o;
}

std::vector<float> to_vec(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat32);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace lcq::test
