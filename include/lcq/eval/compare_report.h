// The side-by-side table of `lcq compare`: one row per quantized configuration plus the
// unquantized reference, as Markdown, JSON, and an SVG plot of perplexity against bits per
// weight. Plain C++ with no model code: the runs themselves are driven by
// src/cli/cmd_compare.cpp, which fills the rows from each run's JSON report.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lcq::eval {

struct CompareRow {
  std::string method;          // "fp" for the unquantized reference
  int bits = 0, group = 0, rank = 0;  // 0 for fp
  double bits_per_weight = 0;  // exact, over the quantized linear layers (0 for fp)
  double perplexity = 0;
  double quantize_seconds = 0;  // the quantizer's own time (model loading and writing excluded)
  int64_t peak_rss_bytes = 0;   // of the quantizing process
  bool cached = false;          // taken from an earlier run's result
  std::string file;             // the quantized model, when kept
};

struct CompareTable {
  std::string model, text;  // what was quantized and the evaluation text
  nlohmann::json settings;  // calibration, evaluation windows, ... (printed under the table)
  std::vector<CompareRow> rows;
};

// The rows in reading order: fp first, then by bits, the order methods were asked for
// (`method_order`, unknown ones last), and rank.
void sort_rows(std::vector<CompareRow>& rows, const std::vector<std::string>& method_order);

std::string render_markdown(const CompareTable& t);
nlohmann::json to_json(const CompareTable& t);
// Perplexity (log scale) against bits per weight; one colour and line per method (and rank),
// the fp perplexity as a dashed line. Self-contained SVG 1.1, no scripts or fonts to fetch.
std::string render_svg(const CompareTable& t);

}  // namespace lcq::eval
