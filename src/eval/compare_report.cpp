#include "lcq/eval/compare_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace lcq::eval {

namespace {

bool is_fp(const CompareRow& r) { return r.method == "fp"; }

std::string fmt_ppl(double p) { return std::isfinite(p) ? fmt::format("{:.4g}", p) : "inf"; }

std::string fmt_bytes(int64_t n) {
  if (n <= 0) return "-";
  return n >= (int64_t(1) << 30) ? fmt::format("{:.2f} GiB", double(n) / double(1 << 30))
                                 : fmt::format("{:.0f} MiB", double(n) / double(1 << 20));
}

std::string fmt_seconds(double s) {
  if (s <= 0) return "-";
  return s < 120 ? fmt::format("{:.1f} s", s) : fmt::format("{:.1f} min", s / 60);
}

// A series of the plot: one method at one rank (LCQ's ranks are separate curves).
std::string series_name(const CompareRow& r) {
  return r.rank > 1 ? fmt::format("{} r{}", r.method, r.rank) : r.method;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

const double* fp_perplexity(const CompareTable& t) {
  for (const auto& r : t.rows)
    if (is_fp(r)) return &r.perplexity;
  return nullptr;
}

}  // namespace

void sort_rows(std::vector<CompareRow>& rows, const std::vector<std::string>& method_order) {
  auto method_index = [&](const std::string& m) {
    auto it = std::find(method_order.begin(), method_order.end(), m);
    return it - method_order.begin();
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const CompareRow& a, const CompareRow& b) {
    if (is_fp(a) != is_fp(b)) return is_fp(a);
    if (a.bits != b.bits) return a.bits < b.bits;
    if (a.method != b.method) return method_index(a.method) < method_index(b.method);
    if (a.group != b.group) return a.group < b.group;
    return a.rank < b.rank;
  });
}

std::string render_markdown(const CompareTable& t) {
  const double* fp = fp_perplexity(t);
  std::string s = fmt::format("Perplexity of `{}` on `{}`\n\n", t.model, t.text);
  s += "| method | bits | group | rank | bits/weight | PPL | PPL vs FP | quantize time | peak memory |\n";
  s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : t.rows) {
    if (is_fp(r)) {
      s += fmt::format("| fp | - | - | - | - | {} | | | |\n", fmt_ppl(r.perplexity));
      continue;
    }
    // The increase in percent; past 10x FP (a collapsed model) the ratio reads better.
    std::string rel;
    if (fp && std::isfinite(r.perplexity) && *fp > 0) {
      const double ratio = r.perplexity / *fp;
      rel = ratio < 10 ? fmt::format("{:+.1f} %", 100 * (ratio - 1)) : fmt::format("x{:.3g}", ratio);
    }
    s += fmt::format("| {} | {} | {} | {} | {:.3f} | {} | {} | {} | {} |\n", r.method, r.bits, r.group, r.rank,
                     r.bits_per_weight, fmt_ppl(r.perplexity), rel, fmt_seconds(r.quantize_seconds),
                     fmt_bytes(r.peak_rss_bytes));
  }
  if (!t.settings.is_null()) s += fmt::format("\nSettings: `{}`\n", t.settings.dump());
  return s;
}

nlohmann::json to_json(const CompareTable& t) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : t.rows) {
    nlohmann::json j = {{"method", r.method},
                        {"perplexity", std::isfinite(r.perplexity) ? nlohmann::json(r.perplexity) : nlohmann::json()}};
    if (!is_fp(r)) {
      j.update({{"bits", r.bits},
                {"group", r.group},
                {"rank", r.rank},
                {"bits_per_weight", r.bits_per_weight},
                {"quantize_seconds", r.quantize_seconds},
                {"peak_rss_bytes", r.peak_rss_bytes},
                {"cached", r.cached}});
      if (!r.file.empty()) j["file"] = r.file;
    }
    rows.push_back(std::move(j));
  }
  return {{"model", t.model}, {"text", t.text}, {"settings", t.settings}, {"rows", rows}};
}

std::string render_svg(const CompareTable& t) {
  constexpr double W = 760, H = 460, left = 72, right = 190, top = 44, bottom = 58;
  const double pw = W - left - right, ph = H - top - bottom;
  std::map<std::string, std::vector<const CompareRow*>> series;
  std::vector<std::string> series_order;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  const double* fp = fp_perplexity(t);
  for (const auto& r : t.rows) {
    if (is_fp(r) || !std::isfinite(r.perplexity) || r.perplexity <= 0) continue;
    const std::string name = series_name(r);
    if (!series.count(name)) series_order.push_back(name);
    series[name].push_back(&r);
    xlo = std::min(xlo, r.bits_per_weight), xhi = std::max(xhi, r.bits_per_weight);
    ylo = std::min(ylo, std::log10(r.perplexity)), yhi = std::max(yhi, std::log10(r.perplexity));
  }
  if (fp && std::isfinite(*fp) && *fp > 0) ylo = std::min(ylo, std::log10(*fp)), yhi = std::max(yhi, std::log10(*fp));
  if (!std::isfinite(xlo)) xlo = 2, xhi = 4;
  if (!std::isfinite(ylo)) ylo = 0, yhi = 1;
  if (xhi - xlo < 0.5) xlo -= 0.25, xhi += 0.25;
  const double xpad = 0.08 * (xhi - xlo);
  xlo -= xpad, xhi += xpad;
  if (yhi - ylo < 0.2) ylo -= 0.1, yhi += 0.1;
  const double ypad = 0.06 * (yhi - ylo);
  ylo -= ypad, yhi += ypad;
  auto X = [&](double v) { return left + (v - xlo) / (xhi - xlo) * pw; };
  auto Y = [&](double ppl) { return top + (yhi - std::log10(ppl)) / (yhi - ylo) * ph; };

  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"14\">{3}</text>\n",
      W, H, left, xml_escape("Perplexity vs bits per weight: " + t.model));
  // Axes, ticks and grid. Log-scale y: 1-2-5 ticks per decade, decades only when the range
  // spans more than three.
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", left, top,
                   pw, ph);
  const bool decades_only = yhi - ylo > 3;
  for (int e = int(std::floor(ylo)); e <= int(std::ceil(yhi)); ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      if (decades_only && m != 1.0) continue;
      const double v = m * std::pow(10.0, e);
      if (std::log10(v) < ylo || std::log10(v) > yhi) continue;
      const double y = Y(v);
      s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, left + pw, y);
      s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 6, y + 4,
                       v >= 1e5 ? fmt::format("1e{}", e) : fmt::format("{:g}", v));
    }
  const double range = xhi - xlo;
  const double step = range <= 1 ? 0.1 : range <= 2.5 ? 0.25 : range <= 5 ? 0.5 : 1.0;
  for (double v = std::ceil(xlo / step) * step; v <= xhi + 1e-9; v += step) {
    const double x = X(v);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#ddd\"/>\n", x, top, x, top + ph);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", x, top + ph + 18, v);
  }
  s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">bits per weight (quantized layers)</text>\n",
                   left + pw / 2, H - 14);
  s += fmt::format("<text transform=\"translate(18,{:.1f}) rotate(-90)\" text-anchor=\"middle\">perplexity (log "
                   "scale)</text>\n",
                   top + ph / 2);

  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                  "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
  double ly = top + 8;
  if (fp && std::isfinite(*fp) && *fp > 0) {
    const double y = Y(*fp);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#000\" stroke-dasharray=\"6 4\"/>\n",
                     left, y, left + pw, y);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#000\" stroke-dasharray=\"6 4\"/>\n",
                     left + pw + 14, ly, left + pw + 38, ly);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\">fp ({})</text>\n", left + pw + 44, ly + 4, fmt_ppl(*fp));
    ly += 20;
  }
  for (size_t i = 0; i < series_order.size(); ++i) {
    const char* color = palette[i % std::size(palette)];
    auto pts = series[series_order[i]];
    std::sort(pts.begin(), pts.end(),
              [](const CompareRow* a, const CompareRow* b) { return a->bits_per_weight < b->bits_per_weight; });
    std::string poly;
    for (const auto* r : pts) poly += fmt::format("{:.1f},{:.1f} ", X(r->bits_per_weight), Y(r->perplexity));
    if (pts.size() > 1)
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", poly, color);
    for (const auto* r : pts)
      s += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"><title>{} W{} g{}: {:.3f} bits/weight, PPL "
          "{}</title></circle>\n",
          X(r->bits_per_weight), Y(r->perplexity), color, xml_escape(series_name(*r)), r->bits, r->group,
          r->bits_per_weight, fmt_ppl(r->perplexity));
    s += fmt::format("<circle cx=\"{}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/>\n", left + pw + 26, ly, color);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", left + pw + 44, ly + 4, xml_escape(series_order[i]));
    ly += 20;
  }
  s += "</svg>\n";
  return s;
}

}  // namespace lcq::eval
