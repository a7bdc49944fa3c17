// The merge loop both BPE flavours share: symbols in a doubly linked list over a byte
// string, candidate pairs in a priority queue, best pair merged first (ties: leftmost),
// stale candidates dropped when popped. O(n log n) in the number of symbols, so a whole
// test set can be encoded in one call.
#pragma once

#include <cstdint>
#include <queue>
#include <vector>

namespace lcq::tokenizer::detail {

struct MergeSymbol {
  uint32_t begin = 0;  // byte offset in the text being encoded
  uint32_t len = 0;    // 0 once merged into its left neighbour
  int id = -1;         // token id, -1 when the symbol is not in the vocabulary
  int prev = -1, next = -1;
};

// Adjacent symbols of the given byte lengths, covering the text from offset 0.
inline std::vector<MergeSymbol> make_symbols(const std::vector<uint32_t>& lengths) {
  std::vector<MergeSymbol> syms(lengths.size());
  uint32_t pos = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    syms[i].begin = pos;
    syms[i].len = lengths[i];
    syms[i].prev = int(i) - 1;
    syms[i].next = i + 1 < lengths.size() ? int(i) + 1 : -1;
    pos += lengths[i];
  }
  return syms;
}

// pair(left, right, &priority, &merged_id) says whether two adjacent symbols may merge and
// how urgently (higher first). Symbols are merged in place; walk the result from index 0
// through `next`.
template <typename PairFn>
void merge_symbols(std::vector<MergeSymbol>& syms, PairFn&& pair) {
  struct Candidate {
    double priority;
    int left, right;
    uint32_t len;  // combined length when proposed: detects symbols that changed since
    int id;
  };
  struct Order {
    bool operator()(const Candidate& a, const Candidate& b) const {
      if (a.priority != b.priority) return a.priority < b.priority;
      return a.left > b.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, Order> agenda;
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    double priority = 0;
    int id = -1;
    if (pair(syms[size_t(l)], syms[size_t(r)], &priority, &id))
      agenda.push({priority, l, r, syms[size_t(l)].len + syms[size_t(r)].len, id});
  };
  for (size_t i = 1; i < syms.size(); ++i) consider(int(i) - 1, int(i));
  while (!agenda.empty()) {
    const Candidate c = agenda.top();
    agenda.pop();
    MergeSymbol& l = syms[size_t(c.left)];
    MergeSymbol& r = syms[size_t(c.right)];
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
    l.len += r.len;
    l.id = c.id;
    l.next = r.next;
    if (r.next >= 0) syms[size_t(r.next)].prev = c.left;
    r.len = 0;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
}

}  // namespace lcq::tokenizer::detail
