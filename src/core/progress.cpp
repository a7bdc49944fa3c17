#include "lcq/core/progress.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <unistd.h>

namespace lcq {
namespace {
std::atomic<bool> g_enabled{true};

std::string format_seconds(double s) {
  if (s < 0 || s > 1e7) return "?";
  int t = int(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}
}  // namespace

void Progress::set_globally_enabled(bool on) { g_enabled = on; }

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled && g_enabled), tty_(isatty(2)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (enabled_ && !tty_) std::fprintf(stderr, "%s: 0/%lld\n", label_.c_str(), (long long)total_);
}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(int64_t done, const std::string& suffix) {
  done_ = done;
  if (!suffix.empty()) suffix_ = suffix;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : 10.0) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& suffix) {
  if (finished_) return;
  finished_ = true;
  if (!suffix.empty()) suffix_ = suffix;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ > 0 ? double(done_) / double(total_) : 1.0;
  double eta = frac > 0 ? elapsed / frac - elapsed : -1;
  std::string line;
  if (tty_) {
    const int width = 28;
    int fill = int(frac * width + 0.5);
    line = fmt::format("\r{} [{}{}] {}/{} {} <{} {}", label_, std::string(fill, '#'),
                       std::string(width - fill, '.'), done_, total_, format_seconds(elapsed),
                       final ? "0:00" : format_seconds(eta), suffix_);
    line += "\x1b[K";
    if (final) line += "\n";
  } else {
    line = fmt::format("{}: {}/{} ({:.0f}%) {} elapsed {}\n", label_, done_, total_, frac * 100,
                       format_seconds(elapsed), suffix_);
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace lcq
