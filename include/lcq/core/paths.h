// The files a command reads and writes, checked before any work: every output can be
// written where it is asked for, and none replaces an input or another output. Every command
// describes its files in one FilePlan and calls check() first; a mistake such as
// `lcq quantize m.gguf -o m.gguf` or `--report` naming the text then fails in a second with
// one clear line, not after hours of training, and nothing is destroyed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lcq {

// True when a and b name the same file: the same device and inode when both exist (whatever
// the spelling: symlinks, hard links, "./", ".."), else the same absolute path once the
// symlinks of its existing part are resolved. A path that exists never equals one that does
// not.
bool same_file(const std::string& a, const std::string& b);

// True when `path` is `dir` or lies below it (paths resolved as in same_file).
bool is_within(const std::string& path, const std::string& dir);

// Throws lcq::Error unless a file can be written at `path` (the way AtomicFile writes it):
// its directory exists and a probe file can be created and removed there, and `path` is not
// a directory. An existing device or FIFO (written directly) must be writable.
void check_output_file(const std::string& path);
// Throws lcq::Error unless `dir` is a directory files can be created in, or can be created
// as one (its nearest existing ancestor is a directory a probe can be created in).
void check_output_directory(const std::string& dir);

class FilePlan {
 public:
  // `what` names the path in messages: an option ("--text", "-o") or "the model".
  // Empty paths are ignored (an option not given).
  void input(const std::string& what, const std::string& path);
  void output_file(const std::string& what, const std::string& path);
  // A directory the command writes `files` into (names relative to it: files, or
  // subdirectories it fills); with none listed, anything anywhere below it.
  void output_directory(const std::string& what, const std::string& dir, std::vector<std::string> files = {});
  // Throws lcq::Error for the first problem: an output that cannot be written, an output that
  // is an input (or a file inside an input directory), or two outputs that are one file.
  void check() const;

 private:
  struct Entry {
    std::string what, path;
    bool directory = false;
    std::vector<std::string> files;  // directory outputs: what is written in it
  };
  std::vector<Entry> inputs_, outputs_;
};

// A fast 64-bit hash of a file's bytes (XXH3), or of a directory's regular files (names and
// bytes, in name order; not recursive), as 16 hex digits. Throws lcq::Error when unreadable.
std::string content_fingerprint(const std::string& path);

}  // namespace lcq
