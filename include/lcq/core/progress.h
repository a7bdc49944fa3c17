// A progress bar on stderr for long work. On a terminal it redraws one line; otherwise
// (logs, CI) it prints a line at most every few seconds, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace lcq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  void update(int64_t done, const std::string& suffix = "");
  void add(int64_t n = 1, const std::string& suffix = "") { update(done_ + n, suffix); }
  void finish(const std::string& suffix = "");
  static void set_globally_enabled(bool on);  // --quiet / --json turn bars off

 private:
  void draw(bool final);
  std::string label_, suffix_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace lcq
