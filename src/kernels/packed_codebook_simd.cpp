// SIMD kernels for PackedCodebookMatrix (Highway, compiled once per target and dispatched
// at run time). Strategy: per row, rebuild every group's K codebook values once (rank + 1
// FMAs per value), then per 8-column field extract the 8 indices from the packed lane words
// with one shift, look the weights up with an in-register permute and FMA them with x.
// See docs/packed-format.md for the layout and the measurements behind the choices.

// Scalable vectors cannot live in arrays; Arm builds use NEON and RISC-V the scalar path.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>

#include "packed_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/packed_codebook_simd.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {

int64_t TargetId() { return HWY_TARGET; }

#if HWY_TARGET == HWY_SCALAR

// One-lane vectors cannot hold a codebook: the scalar target is the portable reference.
void GemmRows(const detail::MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1) {
  detail::gemm_rows_scalar(m, X, n, Y, row0, row1);
}

#else

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::CappedTag<float, 8>;
using DU = hn::RebindToUnsigned<DF>;
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;
using VU = hn::Vec<DU>;
constexpr int kN = int(hn::MaxLanes(DF()));
constexpr int kH = detail::kLanes / kN;  // vectors per 8-column field
static_assert(kN * kH == detail::kLanes, "fields of 8 lanes must split into whole vectors");

// On x86 with 256-bit vectors the permutes ignore the high index bits, which saves the mask.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define LCQ_X86_PERMUTE 1
#else
#define LCQ_X86_PERMUTE 0
#endif

template <int K>
constexpr int TableVectors() {
  return (K > kN ? K : kN) / kN;
}

HWY_INLINE VF LookupLow(VF table, VU idx, uint32_t mask) {
  return hn::TableLookupLanes(table, hn::IndicesFromVec(DF(), hn::And(idx, hn::Set(DU(), mask))));
}

HWY_INLINE VF Select(VU idx, uint32_t bit, VF yes, VF no) {
  return hn::IfThenElse(hn::RebindMask(DF(), hn::TestBit(idx, hn::Set(DU(), bit))), yes, no);
}

// table: the 4 values repeated across the vector.
HWY_INLINE VF Lookup4(const VF* t, VU idx) {
#if LCQ_X86_PERMUTE
  return VF{_mm256_permutevar_ps(t[0].raw, idx.raw)};
#else
  return LookupLow(t[0], idx, 3);
#endif
}

HWY_INLINE VF Lookup8(const VF* t, VU idx) {
#if LCQ_X86_PERMUTE
  return VF{_mm256_permutevar8x32_ps(t[0].raw, idx.raw)};
#else
  if constexpr (kN == 8) {
    return LookupLow(t[0], idx, 7);
  } else {
    return Select(idx, 4, LookupLow(t[1], idx, 3), LookupLow(t[0], idx, 3));
  }
#endif
}

HWY_INLINE VF Lookup16(const VF* t, VU idx) {
#if LCQ_X86_PERMUTE
  const VF lo{_mm256_permutevar8x32_ps(t[0].raw, idx.raw)};
  const VF hi{_mm256_permutevar8x32_ps(t[1].raw, idx.raw)};
  return hn::IfNegativeThenElse(hn::BitCast(DF(), hn::ShiftLeft<28>(idx)), hi, lo);  // bit 3 -> sign
#else
  if constexpr (kN == 8) {
    return Select(idx, 8, LookupLow(t[1], idx, 7), LookupLow(t[0], idx, 7));
  } else {
    const VF lo = Select(idx, 4, LookupLow(t[1], idx, 3), LookupLow(t[0], idx, 3));
    const VF hi = Select(idx, 4, LookupLow(t[3], idx, 3), LookupLow(t[2], idx, 3));
    return Select(idx, 8, hi, lo);
  }
#endif
}

// Lambdas in the kernels must inline into the unrolled loops, or their state spills.
#if defined(__GNUC__) || defined(__clang__)
#define LCQ_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LCQ_INLINE_LAMBDA
#endif

template <class F, int... I>
HWY_INLINE void StaticForImpl(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>()), ...);
}
template <int N, class F>
HWY_INLINE void StaticFor(F&& f) {
  StaticForImpl(f, std::make_integer_sequence<int, N>());
}

// The weights stream once per product: besides the hardware prefetcher, each 64 bytes of
// indices prefetch the line this far ahead (rows are contiguous, so into the next rows).
constexpr int64_t kPrefetchBytes = 2048;

// How a row's fields step from one group's codebook to the next. kSwitchCounted counts
// fields (any group size); kSwitchPerBlocks switches after a whole number of index blocks
// (group a multiple of the block width); kGF > 0 switches every kGF fields at positions fixed
// at compile time (kGF divides the block's field count).
constexpr int kSwitchCounted = 0;
constexpr int kSwitchPerBlocks = -1;

// One row times kT activation vectors. tabs holds the row's group codebooks, `kp` floats
// each, followed by zero spare tables for the padded fields (see GemmRowsT).
template <int kFmt, int kT, int kGF>
HWY_NOINLINE void RowTile(const detail::MatrixView& m, const uint8_t* HWY_RESTRICT p, const float* const* xs,
                          const float* HWY_RESTRICT tabs, size_t kp, float* HWY_RESTRICT out, size_t out_stride) {
  const DF df;
  const DU du;
  constexpr int kA = kT == 1 ? 4 : kT == 2 ? 2 : 1;  // independent FMA chains per token
  constexpr int kNT = kFmt == detail::kFmt2   ? TableVectors<4>()
                      : kFmt == detail::kFmt3 ? TableVectors<8>()
                      : kFmt == detail::kFmt4 ? TableVectors<16>()
                                              : 1;
  VF acc[kT][kA];
  for (int t = 0; t < kT; ++t)
    for (int a = 0; a < kA; ++a) acc[t][a] = hn::Zero(df);
  VF tab[kNT];
  const float* tp = tabs;
  auto load_tab = [&]() HWY_ATTR LCQ_INLINE_LAMBDA {
    for (int k = 0; k < kNT; ++k) tab[k] = hn::Load(df, tp + k * kN);
  };
  auto next_tab = [&]() HWY_ATTR LCQ_INLINE_LAMBDA {
    tp += kp;
    load_tab();
  };
  load_tab();
  const int64_t fields_per_group = m.group / detail::kLanes;
  const int64_t block_fields = detail::format_info(kFmt).block_fields;
  const int64_t blocks_per_group = fields_per_group / block_fields;
  int64_t left = fields_per_group;  // kSwitchCounted: fields left in the group
  int64_t blocks_left = blocks_per_group;
  int64_t xo = 0;
  // After field f (compile-time position in its block, or -1 in tails).
  auto next_field = [&](auto fc) HWY_ATTR LCQ_INLINE_LAMBDA {
    constexpr int f = decltype(fc)::value;
    xo += detail::kLanes;
    if constexpr (kGF > 0 && f >= 0) {
      if constexpr ((f + 1) % kGF == 0) next_tab();
    } else if constexpr (kGF == kSwitchCounted || f < 0) {
      if (--left == 0) {
        left = fields_per_group;
        next_tab();
      }
    }
  };
  auto end_block = [&]() HWY_ATTR LCQ_INLINE_LAMBDA {
    if constexpr (kGF == kSwitchPerBlocks) {
      if (--blocks_left == 0) {
        blocks_left = blocks_per_group;
        next_tab();
      }
    }
  };
  auto start_tail = [&]() HWY_ATTR LCQ_INLINE_LAMBDA {  // tails always count fields
    const int64_t done = m.full_blocks * block_fields;
    left = fields_per_group - done % fields_per_group;
  };
  using Tail = std::integral_constant<int, -1>;
  auto fma = [&](VF w, int h, int slot) HWY_ATTR LCQ_INLINE_LAMBDA {
    for (int t = 0; t < kT; ++t) acc[t][slot] = hn::MulAdd(w, hn::LoadU(df, xs[t] + xo + h * kN), acc[t][slot]);
  };
  auto lane_words = [&](const uint8_t* q, int h) HWY_ATTR LCQ_INLINE_LAMBDA {
    return hn::LoadU(du, reinterpret_cast<const uint32_t*>(q) + h * kN);
  };
  auto half_words = [&](const uint8_t* q, int h) HWY_ATTR LCQ_INLINE_LAMBDA {  // 16-bit lane words of a tail
    return hn::PromoteTo(du, hn::LoadU(hn::Rebind<uint16_t, DU>(), reinterpret_cast<const uint16_t*>(q) + h * kN));
  };

  if constexpr (kFmt == detail::kFmt2 || kFmt == detail::kFmt4) {
    constexpr int kBits = kFmt;
    constexpr int kFields = 32 / kBits;
    auto lookup = [&](VU idx) HWY_ATTR LCQ_INLINE_LAMBDA { return kBits == 2 ? Lookup4(tab, idx) : Lookup16(tab, idx); };
    for (int64_t b = 0; b < m.full_blocks; ++b, p += detail::kWordBytes) {
      if (b % 2 == 0) hwy::Prefetch(p + kPrefetchBytes);  // one line per 64 bytes
      VU w[kH];
      for (int h = 0; h < kH; ++h) w[h] = lane_words(p, h);
      StaticFor<kFields>([&](auto fc) HWY_ATTR LCQ_INLINE_LAMBDA {
        constexpr int f = decltype(fc)::value;
        for (int h = 0; h < kH; ++h) fma(lookup(hn::ShiftRight<kBits * f>(w[h])), h, f % kA);
        next_field(fc);
      });
      end_block();
    }
    if (m.tail_fields > 0) {  // 16-bit lane words holding up to kFields / 2 fields
      start_tail();
      VU w[kH];
      for (int h = 0; h < kH; ++h) w[h] = half_words(p, h);
      const int nf = m.tail_fields;
      StaticFor<kFields / 2>([&](auto fc) HWY_ATTR LCQ_INLINE_LAMBDA {
        constexpr int f = decltype(fc)::value;
        if (f < nf) {
          for (int h = 0; h < kH; ++h) fma(lookup(hn::ShiftRight<kBits * f>(w[h])), h, f % kA);
          next_field(Tail());
        }
      });
    }
  } else if constexpr (kFmt == detail::kFmt3) {
    const VU four = hn::Set(du, 4), six = hn::Set(du, 6);
    for (int64_t b = 0; b < m.full_blocks; ++b, p += 3 * detail::kWordBytes) {
      hwy::Prefetch(p + kPrefetchBytes);
      hwy::Prefetch(p + kPrefetchBytes + 64);
      VU w0[kH], w1[kH], w2[kH];
      for (int h = 0; h < kH; ++h) {
        w0[h] = lane_words(p, h);
        w1[h] = lane_words(p + detail::kWordBytes, h);
        w2[h] = lane_words(p + 2 * detail::kWordBytes, h);
      }
      StaticFor<32>([&](auto fc) HWY_ATTR LCQ_INLINE_LAMBDA {
        constexpr int f = decltype(fc)::value;
        for (int h = 0; h < kH; ++h) {
          VU idx;
          if constexpr (f < 10) {
            idx = hn::ShiftRight<3 * f>(w0[h]);
          } else if constexpr (f < 20) {
            idx = hn::ShiftRight<3 * (f - 10)>(w1[h]);
          } else if constexpr (f < 30) {
            idx = hn::ShiftRight<3 * (f - 20)>(w2[h]);
          } else if constexpr (f == 30) {
            idx = hn::Or(hn::ShiftRight<30>(w0[h]), hn::And(hn::ShiftRight<28>(w1[h]), four));
          } else {
            idx = hn::Or(hn::ShiftRight<31>(w1[h]), hn::And(hn::ShiftRight<29>(w2[h]), six));
          }
          fma(Lookup8(tab, idx), h, f % kA);
        }
        next_field(fc);
      });
      end_block();
    }
    if (m.tail_fields > 0) start_tail();
    for (int f0 = 0; f0 < m.tail_fields; f0 += 10, p += detail::kWordBytes) {  // words of 10 fields
      VU w[kH];
      for (int h = 0; h < kH; ++h) w[h] = lane_words(p, h);
      const int nf = m.tail_fields - f0;
      StaticFor<10>([&](auto fc) HWY_ATTR LCQ_INLINE_LAMBDA {
        constexpr int f = decltype(fc)::value;
        if (f < nf) {
          for (int h = 0; h < kH; ++h) fma(Lookup8(tab, hn::ShiftRight<3 * f>(w[h])), h, f % kA);
          next_field(Tail());
        }
      });
    }
  } else {  // byte format: gather from the group's codebook
    const DI di;
    const hn::Rebind<uint8_t, DU> d8;
    const int64_t fields = m.padded_cols / detail::kLanes;
    for (int64_t f = 0; f < fields; ++f, p += detail::kLanes) {
      for (int h = 0; h < kH; ++h) {
        const VU idx = hn::PromoteTo(du, hn::LoadU(d8, p + h * kN));
        fma(hn::GatherIndex(df, tp, hn::BitCast(di, idx)), h, 0);
      }
      next_field(Tail());
    }
  }
  for (int t = 0; t < kT; ++t) {  // lane sums are reduced later, 8 rows at once
    VF s = acc[t][0];
    for (int a = 1; a < kA; ++a) s = hn::Add(s, acc[t][a]);
    hn::Store(s, df, out + t * out_stride);
  }
}

// y[r] = sum of the lanes of v[r] (kN floats each) for r < nr <= 8.
HWY_INLINE void ReduceRows(const float* HWY_RESTRICT v, int nr, float* HWY_RESTRICT y) {
  const DF df;
#if LCQ_X86_PERMUTE
  if (nr == 8) {  // transpose-add: 7 horizontal adds for 8 rows instead of 8 reductions
    auto ld = [&](int r) HWY_ATTR LCQ_INLINE_LAMBDA { return hn::Load(df, v + r * kN).raw; };
    const __m256 h0 = _mm256_hadd_ps(ld(0), ld(1)), h1 = _mm256_hadd_ps(ld(2), ld(3));
    const __m256 h2 = _mm256_hadd_ps(ld(4), ld(5)), h3 = _mm256_hadd_ps(ld(6), ld(7));
    const __m256 k0 = _mm256_hadd_ps(h0, h1), k1 = _mm256_hadd_ps(h2, h3);
    const __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(k0, k1, 0x20), _mm256_permute2f128_ps(k0, k1, 0x31));
    _mm256_storeu_ps(y, r);
    return;
  }
#endif
  for (int r = 0; r < nr; ++r) y[r] = hn::GetLane(hn::SumOfLanes(df, hn::Load(df, v + r * kN)));
}

// Scratch that survives calls (per thread): basis tables, coefficients, row codebooks.
struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> bufs[4];
  size_t have[4] = {0, 0, 0, 0};
  float* get(int k, size_t need) {
    if (need > have[k]) {
      bufs[k] = hwy::AllocateAligned<float>(need);
      have[k] = need;
    }
    return bufs[k].get();
  }
};

template <int kFmt, int kT>
HWY_INLINE void RowTileFor(int mode, const detail::MatrixView& m, const uint8_t* p, const float* const* xs,
                           const float* tabs, size_t kp, float* out, size_t os) {
  if constexpr (kFmt == detail::kFmtByte) {
    return RowTile<kFmt, kT, kSwitchCounted>(m, p, xs, tabs, kp, out, os);
  } else {
    switch (mode) {
      case kSwitchPerBlocks: return RowTile<kFmt, kT, kSwitchPerBlocks>(m, p, xs, tabs, kp, out, os);
      case 8: return RowTile<kFmt, kT, 8>(m, p, xs, tabs, kp, out, os);
      case 16: return RowTile<kFmt, kT, 16>(m, p, xs, tabs, kp, out, os);
      default: return RowTile<kFmt, kT, kSwitchCounted>(m, p, xs, tabs, kp, out, os);
    }
  }
}

// Builds the codebooks of all groups of row i into tabs (kp floats each).
HWY_INLINE void BuildRowTables(const detail::MatrixView& m, int64_t i, size_t kp, float* E, int64_t& cur_blk,
                               float* coef, float* tabs) {
  const DF df;
  const int np = m.rank + 1;
  const int64_t gpr = m.groups_per_row, g0 = i * gpr;
  const float* cf = m.coef_f32 + g0 * np;
  if (m.dq_bits > 0) {  // codes to floats, a vector at a time
    const hn::Rebind<uint8_t, DU> d8;
    const DI di;
    const uint8_t* codes = m.coef_codes + g0 * np;
    const int64_t total = gpr * np;
    int64_t k = 0;
    for (; k + kN <= total; k += kN)
      hn::Store(hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(DU(), hn::LoadU(d8, codes + k)))), df, coef + k);
    for (; k < total; ++k) coef[k] = float(codes[k]);
    cf = coef;
  }
  int64_t blk = m.dq_bits > 0 ? g0 / m.dq_group : 0;
  int64_t next = m.dq_bits > 0 ? (blk + 1) * m.dq_group - g0 : gpr;  // first j of the next block
  if (blk != cur_blk) {
    detail::basis_tables(m, blk, int(kp), E);
    cur_blk = blk;
  }
  // Table vectors (group j, vector k) are built four at a time: independent FMA chains.
  const int64_t nv = int64_t(kp) / kN;  // a power of two
  int lg = 0;
  while ((int64_t(1) << lg) < nv) ++lg;
  const int64_t vmask = nv - 1;
  int64_t j0 = 0;
  while (j0 < gpr) {
    if (j0 == next) {
      ++blk;
      next += m.dq_group;
      detail::basis_tables(m, blk, int(kp), E);
      cur_blk = blk;
    }
    const int64_t j1 = std::min(gpr, next);  // groups [j0, j1) share the block
    const int64_t total = (j1 - j0) * nv;
    auto chain = [&](int64_t u) HWY_ATTR LCQ_INLINE_LAMBDA {
      const int64_t j = j0 + (u >> lg), k = (u & vmask) * kN;
      const float* c = cf + j;  // parameter q at c[q * gpr]
      VF t = hn::Load(df, E + k);
      for (int q = 0; q < np; ++q) t = hn::MulAdd(hn::Set(df, c[q * gpr]), hn::Load(df, E + (q + 1) * kp + k), t);
      hn::Store(t, df, tabs + size_t(j) * kp + size_t(k));
    };
    // Eight chains hide the FMA latency; with one vector per table they share each basis load.
    constexpr int kC = 8;
    int64_t u = 0;
    for (; u + kC <= total; u += kC) {
      const float* c[kC];
      int64_t off[kC];
      VF t[kC];
      for (int a = 0; a < kC; ++a) {
        const int64_t j = j0 + ((u + a) >> lg), k = ((u + a) & vmask) * kN;
        c[a] = cf + j;
        off[a] = k;
        t[a] = hn::Load(df, E + k);
      }
      for (int q = 0; q < np; ++q) {
        const float* e = E + (q + 1) * kp;
        if (nv == 1) {
          const VF ev = hn::Load(df, e);
          for (int a = 0; a < kC; ++a) t[a] = hn::MulAdd(hn::Set(df, c[a][q * gpr]), ev, t[a]);
        } else {
          for (int a = 0; a < kC; ++a) t[a] = hn::MulAdd(hn::Set(df, c[a][q * gpr]), hn::Load(df, e + off[a]), t[a]);
        }
      }
      float* dst = tabs + size_t(j0) * kp + size_t(u) * kN;  // vectors are consecutive
      for (int a = 0; a < kC; ++a) hn::Store(t[a], df, dst + a * kN);
    }
    for (; u < total; ++u) chain(u);
    j0 = j1;
  }
}

template <int kFmt>
void GemmRowsT(const detail::MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1) {
  const int K = m.levels;
  const size_t kp = size_t(K > kN ? K : kN);  // floats per table; small K repeats
  const int np = m.rank + 1;
  const int64_t gpr = m.groups_per_row;
  thread_local Scratch scratch;
  float* E = scratch.get(0, size_t(np + 1) * kp);
  float* coef = scratch.get(1, size_t(gpr * np + kN));
  // The table pointer advances once per group's worth of fields, including the zero-padded
  // fields at the end of a row (x is zero there), so it may step past the last group by
  // more than one table: every table beyond the row's groups is a zero spare.
  const int64_t padded_groups = (m.padded_cols / detail::kLanes + m.group / detail::kLanes - 1) /
                                (m.group / detail::kLanes);
  const int64_t n_tabs = std::max<int64_t>(gpr, padded_groups) + 1;
  float* tabs = scratch.get(2, size_t(n_tabs) * kp);
  for (size_t k = size_t(gpr) * kp; k < size_t(n_tabs) * kp; ++k) tabs[k] = 0.f;
  int64_t cur_blk = -1;

  const int64_t gf = m.group / detail::kLanes;
  const int64_t bf = detail::format_info(kFmt).block_fields;
  const int mode = gf % bf == 0 ? kSwitchPerBlocks : (bf % gf == 0 && (gf == 8 || gf == 16)) ? int(gf) : kSwitchCounted;
  // Lane partial sums of 8 rows for every token: part[(t * 8 + r) * kN].
  constexpr int kRows = 8;
  float* part = scratch.get(3, size_t(n) * kRows * kN);
  const size_t os = size_t(kRows) * kN;
  for (int64_t i0 = row0; i0 < row1; i0 += kRows) {
    const int nr = int(row1 - i0 < kRows ? row1 - i0 : kRows);
    for (int r = 0; r < nr; ++r) {
      const int64_t i = i0 + r;
      BuildRowTables(m, i, kp, E, cur_blk, coef, tabs);
      const uint8_t* p = m.idx + i * m.row_bytes;
      for (int64_t t0 = 0; t0 < n; t0 += 4) {
        const int64_t nt = n - t0 < 4 ? n - t0 : 4;
        const float* xs[4];
        for (int t = 0; t < nt; ++t) xs[t] = X + (t0 + t) * m.padded_cols;
        float* out = part + (size_t(t0) * kRows + size_t(r)) * kN;
        switch (nt) {
          case 1: RowTileFor<kFmt, 1>(mode, m, p, xs, tabs, kp, out, os); break;
          case 2: RowTileFor<kFmt, 2>(mode, m, p, xs, tabs, kp, out, os); break;
          case 3: RowTileFor<kFmt, 3>(mode, m, p, xs, tabs, kp, out, os); break;
          default: RowTileFor<kFmt, 4>(mode, m, p, xs, tabs, kp, out, os); break;
        }
      }
    }
    for (int64_t t = 0; t < n; ++t) ReduceRows(part + size_t(t) * os, nr, Y + t * m.rows + i0);
  }
}

void GemmRows(const detail::MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1) {
  switch (m.format) {
    case detail::kFmt2: return GemmRowsT<detail::kFmt2>(m, X, n, Y, row0, row1);
    case detail::kFmt3: return GemmRowsT<detail::kFmt3>(m, X, n, Y, row0, row1);
    case detail::kFmt4: return GemmRowsT<detail::kFmt4>(m, X, n, Y, row0, row1);
    default: return GemmRowsT<detail::kFmtByte>(m, X, n, Y, row0, row1);
  }
}

#undef LCQ_X86_PERMUTE
#undef LCQ_INLINE_LAMBDA
#endif  // HWY_TARGET == HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "lcq/kernels/packed_codebook.h"

namespace lcq::kernels {

HWY_EXPORT(GemmRows);
HWY_EXPORT(TargetId);

namespace detail {
void gemm_rows_simd(const MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1) {
  HWY_DYNAMIC_DISPATCH(GemmRows)(m, X, n, Y, row0, row1);
}
}  // namespace detail

namespace {
int64_t g_forced_target = 0;
}

std::vector<SimdTarget> available_simd_targets() {
  hwy::SetSupportedTargetsForTest(0);
  std::vector<SimdTarget> out;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) out.push_back({t, hwy::TargetName(t)});
  if (g_forced_target != 0) hwy::SetSupportedTargetsForTest(g_forced_target);
  return out;
}

void force_simd_target(int64_t id) {
  g_forced_target = id;
  hwy::SetSupportedTargetsForTest(id);
}

const char* current_simd_target() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(TargetId)()); }

}  // namespace lcq::kernels
#endif  // HWY_ONCE
