#include "reference/naive_llama.h"

#include "lcq/core/error.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace lcq::reference {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LCQ_CHECK(in, "{}: cannot open file", path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A cursor over the bytes of one file that refuses to read past its end.
struct Cursor {
  const std::string& path;
  const std::string& bytes;
  size_t pos = 0;

  size_t left() const { return bytes.size() - pos; }
  void take(void* out, size_t n, const char* what) {
    LCQ_CHECK(n <= left(), "{}: truncated file (reading {} at byte {})", path, what, pos);
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
  }
  int32_t i32(const char* what) {
    int32_t v;
    take(&v, 4, what);
    return v;
  }
  std::vector<float> floats(uint64_t count, const char* what) {
    LCQ_CHECK(count <= left() / 4, "{}: truncated file (tensor {} needs {} floats)", path, what, count);
    std::vector<float> v(count);
    take(v.data(), count * 4, what);
    return v;
  }
};

// out[i] = sum_j w[i][j] * x[j], with w row-major [out][in] and double accumulation.
std::vector<double> matvec(const float* w, const std::vector<double>& x, int out) {
  const size_t in = x.size();
  std::vector<double> y(out, 0.0);
  for (int i = 0; i < out; ++i) {
    double acc = 0;
    for (size_t j = 0; j < in; ++j) acc += double(w[size_t(i) * in + j]) * x[j];
    y[i] = acc;
  }
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const float* weight) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + 1e-5);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * double(weight[i]);
  return y;
}

// llama2.c RoPE: consecutive pairs (2i, 2i+1) inside each head rotate by pos * 10000^(-2i/hs).
void rope(std::vector<double>& v, int head_size, int pos) {
  for (size_t i = 0; i < v.size(); i += 2) {
    const int pair_dim = int(i % size_t(head_size));
    const double angle = pos * std::pow(10000.0, -double(pair_dim) / head_size);
    const double c = std::cos(angle), s = std::sin(angle);
    const double a = v[i], b = v[i + 1];
    v[i] = a * c - b * s;
    v[i + 1] = a * s + b * c;
  }
}

double log_sum_exp(const std::vector<double>& logits) {
  const double m = *std::max_element(logits.begin(), logits.end());
  double s = 0;
  for (double l : logits) s += std::exp(l - m);
  return m + std::log(s);
}

}  // namespace

NaiveLlama NaiveLlama::load(const std::string& path) {
  const std::string bytes = read_file(path);
  Cursor cur{path, bytes};
  NaiveLlama m;
  NaiveConfig& c = m.config;
  c.dim = cur.i32("header");
  c.hidden_dim = cur.i32("header");
  c.n_layers = cur.i32("header");
  c.n_heads = cur.i32("header");
  c.n_kv_heads = cur.i32("header");
  const int32_t signed_vocab = cur.i32("header");
  c.seq_len = cur.i32("header");
  const int64_t kMax = 1 << 20;
  LCQ_CHECK(c.dim > 0 && c.dim < kMax && c.hidden_dim > 0 && c.hidden_dim < kMax && c.n_layers > 0 &&
                c.n_layers < 4096 && c.n_heads > 0 && c.n_kv_heads > 0 && c.seq_len > 0 &&
                c.seq_len < kMax && signed_vocab != 0 && std::abs(int64_t(signed_vocab)) < kMax,
            "{}: not a llama2.c checkpoint (implausible header)", path);
  LCQ_CHECK(c.dim % c.n_heads == 0 && c.n_heads % c.n_kv_heads == 0 && (c.dim / c.n_heads) % 2 == 0,
            "{}: inconsistent head counts in header (dim {}, heads {}, kv heads {})", path, c.dim,
            c.n_heads, c.n_kv_heads);
  c.shared_classifier = signed_vocab > 0;
  c.vocab_size = std::abs(signed_vocab);
  m.vocab_size = c.vocab_size;
  m.seq_len = c.seq_len;

  const uint64_t dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers, vocab = c.vocab_size;
  const uint64_t kv = uint64_t(m.kv_dim()), half_head = dim / c.n_heads / 2;
  const uint64_t per_layer = 2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim;
  const uint64_t expected = vocab * dim + layers * per_layer + dim + 2 * uint64_t(c.seq_len) * half_head +
                            (c.shared_classifier ? 0 : vocab * dim);
  LCQ_CHECK(cur.left() == expected * 4, "{}: size {} bytes does not match the header (expected {})", path,
            bytes.size(), 28 + expected * 4);
  m.token_embedding = cur.floats(vocab * dim, "token_embedding");
  m.rms_att = cur.floats(layers * dim, "rms_att");
  m.wq = cur.floats(layers * dim * dim, "wq");
  m.wk = cur.floats(layers * kv * dim, "wk");
  m.wv = cur.floats(layers * kv * dim, "wv");
  m.wo = cur.floats(layers * dim * dim, "wo");
  m.rms_ffn = cur.floats(layers * dim, "rms_ffn");
  m.w1 = cur.floats(layers * hidden * dim, "w1");
  m.w2 = cur.floats(layers * dim * hidden, "w2");
  m.w3 = cur.floats(layers * hidden * dim, "w3");
  m.rms_final = cur.floats(dim, "rms_final");
  m.freq_cis_real = cur.floats(c.seq_len * half_head, "freq_cis_real");
  m.freq_cis_imag = cur.floats(c.seq_len * half_head, "freq_cis_imag");
  if (!c.shared_classifier) m.wcls = cur.floats(vocab * dim, "wcls");
  m.reset();
  return m;
}

void NaiveLlama::reset() {
  key_cache_.assign(size_t(config.n_layers) * seq_len * kv_dim(), 0.0);
  value_cache_.assign(key_cache_.size(), 0.0);
  filled_ = 0;
}

std::vector<double> NaiveLlama::forward_f64(int token, int pos) {
  LCQ_CHECK(token >= 0 && token < vocab_size, "reference: token {} out of range", token);
  LCQ_CHECK(pos >= 0 && pos < seq_len && pos <= filled_, "reference: position {} fed out of order", pos);
  const int dim = config.dim, hidden = config.hidden_dim, kvd = kv_dim();
  const int head_size = dim / config.n_heads, group = config.n_heads / config.n_kv_heads;
  std::vector<double> x(token_embedding.begin() + size_t(token) * dim,
                        token_embedding.begin() + size_t(token + 1) * dim);

  for (int l = 0; l < config.n_layers; ++l) {
    // Attention block.
    std::vector<double> xb = rmsnorm(x, &rms_att[size_t(l) * dim]);
    std::vector<double> q = matvec(&wq[size_t(l) * dim * dim], xb, dim);
    std::vector<double> k = matvec(&wk[size_t(l) * kvd * dim], xb, kvd);
    std::vector<double> v = matvec(&wv[size_t(l) * kvd * dim], xb, kvd);
    rope(q, head_size, pos);
    rope(k, head_size, pos);
    double* layer_keys = &key_cache_[size_t(l) * seq_len * kvd];
    double* layer_values = &value_cache_[size_t(l) * seq_len * kvd];
    std::copy(k.begin(), k.end(), layer_keys + size_t(pos) * kvd);
    std::copy(v.begin(), v.end(), layer_values + size_t(pos) * kvd);

    std::vector<double> att_out(dim, 0.0);
    for (int h = 0; h < config.n_heads; ++h) {
      const int kv_offset = (h / group) * head_size;  // GQA: `group` query heads share a KV head
      std::vector<double> scores(pos + 1);
      for (int t = 0; t <= pos; ++t) {
        double dot = 0;
        const double* key = layer_keys + size_t(t) * kvd + kv_offset;
        for (int i = 0; i < head_size; ++i) dot += q[h * head_size + i] * key[i];
        scores[t] = dot / std::sqrt(double(head_size));
      }
      const double lse = log_sum_exp(scores);
      for (int t = 0; t <= pos; ++t) {
        const double p = std::exp(scores[t] - lse);
        const double* value = layer_values + size_t(t) * kvd + kv_offset;
        for (int i = 0; i < head_size; ++i) att_out[h * head_size + i] += p * value[i];
      }
    }
    std::vector<double> o = matvec(&wo[size_t(l) * dim * dim], att_out, dim);
    for (int i = 0; i < dim; ++i) x[i] += o[i];

    // SwiGLU feed-forward block: w2(silu(w1 x) * w3 x).
    xb = rmsnorm(x, &rms_ffn[size_t(l) * dim]);
    std::vector<double> h1 = matvec(&w1[size_t(l) * hidden * dim], xb, hidden);
    std::vector<double> h3 = matvec(&w3[size_t(l) * hidden * dim], xb, hidden);
    for (int i = 0; i < hidden; ++i) h1[i] = h1[i] / (1.0 + std::exp(-h1[i])) * h3[i];
    std::vector<double> f = matvec(&w2[size_t(l) * dim * hidden], h1, dim);
    for (int i = 0; i < dim; ++i) x[i] += f[i];
  }
  filled_ = pos + 1;
  x = rmsnorm(x, rms_final.data());
  return matvec(wcls.empty() ? token_embedding.data() : wcls.data(), x, vocab_size);
}

std::vector<float> NaiveLlama::forward(int token, int pos) {
  std::vector<double> logits = forward_f64(token, pos);
  return std::vector<float>(logits.begin(), logits.end());
}

std::vector<int> NaiveLlama::greedy(int n_steps) {
  LCQ_CHECK(n_steps >= 0 && n_steps < seq_len, "reference: {} greedy steps do not fit seq_len {}", n_steps,
            seq_len);
  reset();
  std::vector<int> out;
  int token = kBos;
  for (int pos = 0; pos < n_steps; ++pos) {
    std::vector<double> logits = forward_f64(token, pos);
    token = int(std::max_element(logits.begin(), logits.end()) - logits.begin());  // first max wins
    out.push_back(token);
  }
  return out;
}

double NaiveLlama::sum_nll(const std::vector<int>& tokens) {
  LCQ_CHECK(tokens.size() >= 2 && tokens.size() <= size_t(seq_len),
            "reference: {} tokens cannot be scored with seq_len {}", tokens.size(), seq_len);
  reset();
  double total = 0;
  for (size_t t = 0; t + 1 < tokens.size(); ++t) {
    std::vector<double> logits = forward_f64(tokens[t], int(t));
    LCQ_CHECK(tokens[t + 1] >= 0 && tokens[t + 1] < vocab_size, "reference: token {} out of range",
              tokens[t + 1]);
    total += log_sum_exp(logits) - logits[tokens[t + 1]];
  }
  return total;
}

double NaiveLlama::mean_nll(const std::vector<int>& tokens) {
  return sum_nll(tokens) / double(tokens.size() - 1);
}

double NaiveLlama::perplexity_gptq(const std::vector<int>& tokens, int seqlen, int max_windows) {
  LCQ_CHECK(seqlen >= 2 && seqlen <= seq_len, "reference: window {} outside [2, {}]", seqlen, seq_len);
  size_t windows = tokens.size() / size_t(seqlen);
  if (max_windows > 0) windows = std::min(windows, size_t(max_windows));
  LCQ_CHECK(windows > 0, "reference: {} tokens make no window of {}", tokens.size(), seqlen);
  double total = 0;
  for (size_t w = 0; w < windows; ++w) {
    const auto first = tokens.begin() + std::ptrdiff_t(w * size_t(seqlen));
    total += sum_nll(std::vector<int>(first, first + seqlen));
  }
  return std::exp(total / double(windows * size_t(seqlen - 1)));
}

NaiveTokenizer NaiveTokenizer::load(const std::string& path, int vocab_size) {
  const std::string bytes = read_file(path);
  Cursor cur{path, bytes};
  const int32_t max_len = cur.i32("max_token_length");
  LCQ_CHECK(max_len > 0 && max_len < 65536, "{}: implausible max_token_length {}", path, max_len);
  LCQ_CHECK(vocab_size > 0 && uint64_t(vocab_size) <= cur.left() / 8, "{}: too small for {} pieces", path,
            vocab_size);
  NaiveTokenizer tok;
  for (int i = 0; i < vocab_size; ++i) {
    float score;
    cur.take(&score, 4, "piece score");
    const int32_t len = cur.i32("piece length");
    LCQ_CHECK(len >= 0 && len <= max_len, "{}: piece {} has length {} (max {})", path, i, len, max_len);
    std::string piece(size_t(len), '\0');
    cur.take(piece.data(), size_t(len), "piece bytes");
    tok.pieces.push_back(piece);
    tok.scores.push_back(score);
  }
  LCQ_CHECK(cur.left() == 0, "{}: {} trailing bytes after {} pieces", path, cur.left(), vocab_size);
  return tok;
}

std::string NaiveTokenizer::decode_piece(int prev_token, int token) const {
  LCQ_CHECK(token >= 0 && size_t(token) < pieces.size(), "reference: token {} out of range", token);
  std::string piece = pieces[token];
  if (prev_token == NaiveLlama::kBos && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  unsigned byte = 0;
  char tail = 0;
  if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X%c", &byte, &tail) == 2 && tail == '>')
    return std::string(1, char(byte));
  return piece;
}

std::string NaiveTokenizer::decode(const std::vector<int>& tokens) const {
  std::string text;
  int prev = NaiveLlama::kBos;
  for (int t : tokens) {
    text += decode_piece(prev, t);
    prev = t;
  }
  return text;
}

}  // namespace lcq::reference
