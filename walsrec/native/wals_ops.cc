// WalsSolveRows: one TensorFlow kernel that solves every row of one WALS half-step.
//
// For each row u (a user, or an item) with observed entries j in indices[indptr[u]:indptr[u+1]]
// it solves the normal equations
//
//     (G + reg_u I + sum_j extra_j q_j q_j^T) x_u = sum_j (wt_j - extra_j o_j) q_j - g
//
// where q_j = design[j] (the fixed side's factors, with a trailing 1 when biases are learned),
// o_j = offsets[j] (the fixed side's bias), G = unobserved_gram, g = unobserved_offset_term,
// extra_j = c_j - w0 and wt_j = c_j t_j (with the attr target_from_extra, implicit feedback's
// t_j = 1: weighted_target is the one value w0 and wt_j = w0 + extra_j, not stored per entry,
// which is 4 bytes an entry on each side). A row without entries is set to exactly zero (no
// information; CG would keep part of its warm start). It is the same system as the TensorFlow-op solvers in
// walsrec/models/wals_graph.py (_normal_equations, _cg_chunk_solver); this kernel exists for speed:
//
// * No padding and no dispatch per chunk: rows are read straight from CSR arrays, and the work
//   is cut into blocks of about equal cost that TensorFlow's intra-op thread pool runs.
// * Each row gathers its q_j once into a contiguous scratch block that stays in cache for every
//   pass over it (the first residual and each CG step read it once: dot and update fused, four
//   entries at a time so the four dot products' reductions overlap).
// * "cholesky" forms the row's Gram matrix with Eigen's triangular matrix product (GEMM speed
//   instead of a batched matmul of tiny matrices), then a Cholesky solve.
// * "cholesky" on a light row (n entries with n << d, e.g. an item seen once or twice) skips
//   the row's d x d factorization: the rows share M = G + reg I, factored once per call (per
//   distinct reg) as L L^T, and the row's matrix is M + W E W^T with W = [q_j], E = diag(extra)
//   (extra >= 0), so by Woodbury with V = L^-1 W E^1/2 (d x n)
//
//       x = L^-T (I - V (I_n + V^T V)^-1 V^T) L^-1 b,
//
//   O(n d^2 + n^2 d + n^3 + d^2) instead of O(n d^2 + d^3); I_n + V^T V has eigenvalues >= 1.
//   The attr light_solve picks it: "auto" for rows with n <= LightMaxLength(d), "never", or
//   "always" (every row: the tests compare both paths on the same rows).
//
// Rows are independent, so results do not depend on the number of threads. A Cholesky failure
// (not positive definite) writes NaN, as TensorFlow's batched Cholesky does on CPU; the caller
// checks for finite factors.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "Eigen/Cholesky"
#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace walsrec {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;

REGISTER_OP("WalsSolveRows")
    .Attr("T: {float, double}")
    .Attr("solver: {'cg', 'cholesky'}")
    .Attr("cg_steps: int >= 1 = 3")
    .Attr("light_solve: {'auto', 'never', 'always'} = 'auto'")
    .Attr("target_from_extra: bool = false")
    .Input("design: T")                  // [n_other, d]
    .Input("offsets: T")                 // [n_other]
    .Input("unobserved_gram: T")         // [d, d]
    .Input("unobserved_offset_term: T")  // [d]
    .Input("indptr: int64")              // [n_rows + 1]
    .Input("indices: int32")             // [nnz] index into design
    .Input("extra: T")                   // [nnz]
    .Input("weighted_target: T")         // [nnz], or [1] = w0 with target_from_extra
    .Input("row_regularization: T")      // [n_rows]
    .Input("start: T")                   // [n_rows, d] warm start (cg); ignored by cholesky
    .Output("solution: T")               // [n_rows, d]
    .SetShapeFn([](InferenceContext* c) {
      auto rows = c->Dim(c->input(8), 0);
      auto dimension = c->Dim(c->input(0), 1);
      c->set_output(0, c->Matrix(rows, dimension));
      return absl::OkStatus();
    });

namespace {

#if defined(__AVX512F__)
// Pass (below) for float rows of 16 * NV values (16 to 128 factors), in AVX-512 registers:
// v and out stay in registers for the whole row, and the four dot products of each group of
// four entries are reduced together (one transpose-and-add tree instead of four reductions).
// About half the time of the generic loop at 64 factors. The sums are in another order than
// the generic loop's, so the results differ from it by rounding.
template <int NV>
inline void PassAvx512(const float* block, int64_t length, const float* base,
                       const float* weight, const float* v, float* out) {
  constexpr int d = 16 * NV;
  __m512 vv[NV], acc[NV];
  for (int k = 0; k < NV; ++k) {
    vv[k] = _mm512_loadu_ps(v + 16 * k);
    acc[k] = _mm512_loadu_ps(out + 16 * k);
  }
  int64_t j = 0;
  for (; j + 4 <= length; j += 4) {
    const float* q = block + j * d;
    __m512 dot[4];
    for (int r = 0; r < 4; ++r) {
      const float* row = q + r * d;
      __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(row), vv[0]);
      for (int k = 1; k < NV; ++k) sum = _mm512_fmadd_ps(_mm512_loadu_ps(row + 16 * k), vv[k], sum);
      dot[r] = sum;
    }
    // 128-bit lanes: t01 = [d0.0+d0.2, d0.1+d0.3, d1.0+d1.2, d1.1+d1.3], t23 likewise; then
    // u = [d0, d1, d2, d3] as four partial sums each; then within each lane.
    const __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(dot[0], dot[1], 0x44),
                                     _mm512_shuffle_f32x4(dot[0], dot[1], 0xEE));
    const __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(dot[2], dot[3], 0x44),
                                     _mm512_shuffle_f32x4(dot[2], dot[3], 0xEE));
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88),
                             _mm512_shuffle_f32x4(t01, t23, 0xDD));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0x4E));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0xB1));
    alignas(64) float sums[16];
    _mm512_store_ps(sums, u);
    float s[4];
    for (int r = 0; r < 4; ++r) {
      s[r] = sums[4 * r] * weight[j + r];
      if (base != nullptr) s[r] += base[j + r];
    }
    for (int r = 0; r < 4; ++r) {
      const __m512 scale = _mm512_set1_ps(s[r]);
      const float* row = q + r * d;
      for (int k = 0; k < NV; ++k) {
        acc[k] = _mm512_fmadd_ps(scale, _mm512_loadu_ps(row + 16 * k), acc[k]);
      }
    }
  }
  for (; j < length; ++j) {
    const float* row = block + j * d;
    __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(row), vv[0]);
    for (int k = 1; k < NV; ++k) sum = _mm512_fmadd_ps(_mm512_loadu_ps(row + 16 * k), vv[k], sum);
    float s = _mm512_reduce_add_ps(sum) * weight[j];
    if (base != nullptr) s += base[j];
    const __m512 scale = _mm512_set1_ps(s);
    for (int k = 0; k < NV; ++k) {
      acc[k] = _mm512_fmadd_ps(scale, _mm512_loadu_ps(row + 16 * k), acc[k]);
    }
  }
  for (int k = 0; k < NV; ++k) _mm512_storeu_ps(out + 16 * k, acc[k]);
}

// PassAvx512 for d = 16 * NV, NV = 1..8; false for any other d.
inline bool PassFast(const float* block, int64_t length, int d, const float* base,
                     const float* weight, const float* v, float* out) {
  switch (d) {
    case 16: PassAvx512<1>(block, length, base, weight, v, out); return true;
    case 32: PassAvx512<2>(block, length, base, weight, v, out); return true;
    case 48: PassAvx512<3>(block, length, base, weight, v, out); return true;
    case 64: PassAvx512<4>(block, length, base, weight, v, out); return true;
    case 80: PassAvx512<5>(block, length, base, weight, v, out); return true;
    case 96: PassAvx512<6>(block, length, base, weight, v, out); return true;
    case 112: PassAvx512<7>(block, length, base, weight, v, out); return true;
    case 128: PassAvx512<8>(block, length, base, weight, v, out); return true;
    default: return false;
  }
}
#endif

// out += sum_j (base_j + weight_j (q_j . v)) q_j over the L rows of `block` (stride d).
// base may be null (0). Four entries at a time: their dot products are independent, so the
// horizontal reductions overlap, and `out` is loaded and stored once per four entries.
template <typename T>
inline void Pass(const T* block, int64_t length, int d, const T* base, const T* weight,
                 const T* v, T* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (PassFast(block, length, d, base, weight, v, out)) return;
  }
#endif
  int64_t j = 0;
  for (; j + 4 <= length; j += 4) {
    const T* q0 = block + j * d;
    const T* q1 = q0 + d;
    const T* q2 = q1 + d;
    const T* q3 = q2 + d;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int k = 0; k < d; ++k) {
      s0 += q0[k] * v[k];
      s1 += q1[k] * v[k];
      s2 += q2[k] * v[k];
      s3 += q3[k] * v[k];
    }
    s0 *= weight[j];
    s1 *= weight[j + 1];
    s2 *= weight[j + 2];
    s3 *= weight[j + 3];
    if (base != nullptr) {
      s0 += base[j];
      s1 += base[j + 1];
      s2 += base[j + 2];
      s3 += base[j + 3];
    }
#pragma omp simd
    for (int k = 0; k < d; ++k) out[k] += s0 * q0[k] + s1 * q1[k] + s2 * q2[k] + s3 * q3[k];
  }
  for (; j < length; ++j) {
    const T* q = block + j * d;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < d; ++k) s += q[k] * v[k];
    s *= weight[j];
    if (base != nullptr) s += base[j];
#pragma omp simd
    for (int k = 0; k < d; ++k) out[k] += s * q[k];
  }
}

template <typename T>
inline T Dot(const T* a, const T* b, int d) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// out += (G + reg I) v; G is symmetric, so column k is row k: axpys, no reductions.
template <typename T>
inline void DensePart(const T* gram, T regularization, const T* v, int d, T* out) {
  for (int k = 0; k < d; ++k) {
    const T* column = gram + static_cast<int64_t>(k) * d;
    const T scale = v[k];
#pragma omp simd
    for (int i = 0; i < d; ++i) out[i] += scale * column[i];
  }
#pragma omp simd
  for (int i = 0; i < d; ++i) out[i] += regularization * v[i];
}

template <typename T>
inline T DivideNoNan(T numerator, T denominator) {
  return denominator == 0 ? T(0) : numerator / denominator;
}

// The op's inputs for one call (see REGISTER_OP above), as raw pointers.
template <typename T>
struct Inputs {
  int d;
  int64_t n_other;
  const T* design;
  const T* offsets;
  const T* gram;
  const T* offset_term;
  const int64_t* indptr;
  const int32_t* indices;
  const T* extra;
  const T* weighted_target;  // [1] = w0 when target_from_extra
  bool target_from_extra;
  const T* regularization;
  const T* start;  // null for cholesky
};

// Rows of "cholesky" with at most this many entries take the Woodbury solve under "auto". Per
// row it costs about n d^2 + n^2 d + n^3 / 3 + 2 d^2 against n d^2 + d^3 / 3 for the exact
// path; d / 4 keeps a margin for the exact path's better blocking (measured: d = 32..96).
inline int64_t LightMaxLength(int64_t d) { return d / 4; }

// Distinct row regularizations factored for light rows; rows with another one (only possible
// with many distinct values, e.g. "count" scaling with a large LightMaxLength) take the exact
// path. Each factorization costs d^3 / 3 once per call.
constexpr size_t kMaxLightFactors = 64;

// L (lower Cholesky factor of G + reg I) and L^-1 g, for each regularization in `values`.
template <typename T>
struct LightFactors {
  using ColMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  std::vector<T> values;  // sorted
  std::vector<ColMatrix> lower;
  std::vector<Vector> offset;  // L^-1 g
  std::vector<bool> ok;        // the factorization succeeded

  // Index into the vectors, or -1 when reg was not factored.
  int Find(T reg) const {
    auto it = std::lower_bound(values.begin(), values.end(), reg);
    if (it == values.end() || *it != reg) return -1;
    const int index = static_cast<int>(it - values.begin());
    return ok[index] ? index : -1;
  }
};

// Entries gathered before the first residual's pass reads them (a multiple of Pass's 4).
constexpr int64_t kGatherChunk = 16;
// How many entries ahead GatherEntries prefetches the design row.
constexpr int64_t kPrefetchAhead = 8;

template <typename T>
class RowSolver {
 public:
  RowSolver(const Inputs<T>& in, int cg_steps, const LightFactors<T>* light = nullptr)
      : in_(in), d_(in.d), cg_steps_(cg_steps), light_(light) {}

  // The Woodbury solve of a light row (see the file comment); false if this row cannot take
  // it (its regularization was not factored, or an extra is negative): use SolveCholesky.
  bool SolveLight(int64_t row, T* x) {
    using ColMatrix = typename LightFactors<T>::ColMatrix;
    using Vector = typename LightFactors<T>::Vector;
    if (light_ == nullptr) return false;
    const int factor = light_->Find(in_.regularization[row]);
    if (factor < 0) return false;
    const int64_t first = in_.indptr[row];
    const int64_t length = in_.indptr[row + 1] - first;
    const T* extra = in_.extra + first;
    for (int64_t j = 0; j < length; ++j) {
      if (!(extra[j] >= 0)) return false;
    }
    Gather(row);
    const auto lower = light_->lower[factor].template triangularView<Eigen::Lower>();
    Eigen::Map<Vector> solution(x, d_);
    // y0 = L^-1 b = L^-1 (W c - g) = (L^-1 W) c - L^-1 g.
    solution = -light_->offset[factor];
    if (length > 0) {
      // block_ is the row-major n x d [q_j]: as column-major it is W (d x n).
      w_ = Eigen::Map<const ColMatrix>(block_.data(), d_, length);
      lower.solveInPlace(w_);
      Eigen::Map<const Vector> base(base_.data(), length);
      solution.noalias() += w_ * base;
      for (int64_t j = 0; j < length; ++j) w_.col(j) *= std::sqrt(extra[j]);  // V
      small_.resize(length, length);
      small_.setIdentity();
      small_.template selfadjointView<Eigen::Lower>().rankUpdate(w_.transpose());
      Eigen::LLT<ColMatrix, Eigen::Lower> cholesky(small_);
      if (cholesky.info() != Eigen::Success) return false;
      projection_.noalias() = w_.transpose() * solution;
      cholesky.solveInPlace(projection_);
      solution.noalias() -= w_ * projection_;
    }
    lower.transpose().solveInPlace(solution);
    return true;
  }

  // Gathers the row's q_j into block_ and its right-hand-side coefficients
  // c_j = wt_j - extra_j o_j into base_; returns the row's length.
  int64_t Gather(int64_t row) {
    const int64_t first = in_.indptr[row];
    const int64_t length = in_.indptr[row + 1] - first;
    block_.resize(static_cast<size_t>(length * d_));
    base_.resize(static_cast<size_t>(length));
    GatherEntries(first, 0, length, length);
    return length;
  }

  // Entries [begin, end) of the row of `length` entries starting at `first` into block_ and
  // base_ (sized already).
  void GatherEntries(int64_t first, int64_t begin, int64_t end, int64_t length) {
    for (int64_t j = begin; j < end; ++j) {
      // The design rows are read in random order (the item side's are 35 MB at ML-20M, out
      // of cache): ask for the one kPrefetchAhead entries on while this one is copied.
      if (j + kPrefetchAhead < length) {
        const char* ahead = reinterpret_cast<const char*>(
            in_.design + static_cast<int64_t>(in_.indices[first + j + kPrefetchAhead]) * d_);
        for (int64_t byte = 0; byte < static_cast<int64_t>(sizeof(T)) * d_; byte += 64) {
          __builtin_prefetch(ahead + byte);
        }
      }
      const int64_t other = in_.indices[first + j];
      std::memcpy(block_.data() + j * d_, in_.design + other * d_, sizeof(T) * d_);
      const T target = in_.target_from_extra ? in_.weighted_target[0] + in_.extra[first + j]
                                             : in_.weighted_target[first + j];
      base_[j] = target - in_.extra[first + j] * in_.offsets[other];
    }
  }

  void SolveCg(int64_t row, T* x) {
    const int64_t first = in_.indptr[row];
    const int64_t length = in_.indptr[row + 1] - first;
    const T* extra = in_.extra + first;
    const T regularization = in_.regularization[row];
    block_.resize(static_cast<size_t>(length * d_));
    base_.resize(static_cast<size_t>(length));
    residual_.assign(d_, T(0));
    direction_.resize(d_);
    product_.resize(d_);
    negative_extra_.resize(static_cast<size_t>(length));
    for (int64_t j = 0; j < length; ++j) negative_extra_[j] = -extra[j];
    std::memcpy(x, in_.start + row * d_, sizeof(T) * d_);
    // r = sum_j (c_j - extra_j q_j.x) q_j - g - (G + reg I) x. The pass runs on each
    // kGatherChunk entries as soon as they are gathered, while they are in L1. It is not the
    // same bits as one pass over the whole block (the factors of 6 ML-20M epochs differ by
    // about 1e-6; the cause was not found), and it measured no faster (0.62 s an epoch either
    // way, 2026-12-04): kept only so that the factors stay as they are.
    for (int64_t begin = 0; begin < length; begin += kGatherChunk) {
      const int64_t end = std::min(length, begin + kGatherChunk);
      GatherEntries(first, begin, end, length);
      Pass(block_.data() + begin * d_, end - begin, d_, base_.data() + begin,
           negative_extra_.data() + begin, x, residual_.data());
    }
    product_.assign(d_, T(0));
    DensePart(in_.gram, regularization, x, d_, product_.data());
    for (int i = 0; i < d_; ++i) residual_[i] -= in_.offset_term[i] + product_[i];
    std::copy(residual_.begin(), residual_.end(), direction_.begin());
    T residual_norm = Dot(residual_.data(), residual_.data(), d_);
    for (int step = 0; step < cg_steps_; ++step) {
      product_.assign(d_, T(0));
      Pass<T>(block_.data(), length, d_, nullptr, extra, direction_.data(), product_.data());
      DensePart(in_.gram, regularization, direction_.data(), d_, product_.data());
      const T curvature = Dot(direction_.data(), product_.data(), d_);
      const T alpha = DivideNoNan(residual_norm, curvature);
      for (int i = 0; i < d_; ++i) {
        x[i] += alpha * direction_[i];
        residual_[i] -= alpha * product_[i];
      }
      const T new_norm = Dot(residual_.data(), residual_.data(), d_);
      const T beta = DivideNoNan(new_norm, residual_norm);
      for (int i = 0; i < d_; ++i) direction_[i] = residual_[i] + beta * direction_[i];
      residual_norm = new_norm;
    }
  }

  void SolveCholesky(int64_t row, T* x) {
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    const int64_t length = Gather(row);
    const T* extra = in_.extra + in_.indptr[row];
    Eigen::Map<const Matrix> block(block_.data(), length, d_);
    scaled_.resize(static_cast<size_t>(length * d_));
    Eigen::Map<Matrix> scaled(scaled_.data(), length, d_);
    for (int64_t j = 0; j < length; ++j) scaled.row(j) = block.row(j) * extra[j];
    lhs_ = Eigen::Map<const Matrix>(in_.gram, d_, d_);
    lhs_.diagonal().array() += in_.regularization[row];
    if (length > 0) {
      lhs_.template triangularView<Eigen::Lower>() += block.transpose() * scaled;
    }
    Eigen::Map<const Vector> base(base_.data(), length);
    Vector rhs = -Eigen::Map<const Vector>(in_.offset_term, d_);
    if (length > 0) rhs.noalias() += block.transpose() * base;
    Eigen::LLT<Matrix, Eigen::Lower> cholesky(lhs_);
    Eigen::Map<Vector> solution(x, d_);
    if (cholesky.info() != Eigen::Success) {
      solution.setConstant(std::numeric_limits<T>::quiet_NaN());
      return;
    }
    solution = cholesky.solve(rhs);
  }

 private:
  const Inputs<T>& in_;
  const int d_;
  const int cg_steps_;
  const LightFactors<T>* light_;
  std::vector<T> block_, base_, negative_extra_, residual_, direction_, product_, scaled_;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> lhs_;
  typename LightFactors<T>::ColMatrix w_, small_;
  typename LightFactors<T>::Vector projection_;
};

// Factors G + reg I for the regularizations of the rows that take the light solve, the most
// common first, at most kMaxLightFactors of them (all of them for "always").
template <typename T>
LightFactors<T> FactorLightRows(const Inputs<T>& in, int64_t n_rows, int64_t max_length,
                                bool always) {
  using ColMatrix = typename LightFactors<T>::ColMatrix;
  LightFactors<T> light;
  std::vector<T> regs;
  for (int64_t row = 0; row < n_rows; ++row) {
    if (always || in.indptr[row + 1] - in.indptr[row] <= max_length) {
      regs.push_back(in.regularization[row]);
    }
  }
  if (regs.empty()) return light;
  std::sort(regs.begin(), regs.end());
  std::vector<std::pair<int64_t, T>> counts;  // (-count, value): most common first
  for (size_t i = 0; i < regs.size();) {
    size_t j = i;
    while (j < regs.size() && regs[j] == regs[i]) ++j;
    counts.emplace_back(-static_cast<int64_t>(j - i), regs[i]);
    i = j;
  }
  if (!always && counts.size() > kMaxLightFactors) {
    std::partial_sort(counts.begin(), counts.begin() + kMaxLightFactors, counts.end());
    counts.resize(kMaxLightFactors);
  }
  for (const auto& count : counts) light.values.push_back(count.second);
  std::sort(light.values.begin(), light.values.end());
  const int d = in.d;
  Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> gram(
      in.gram, d, d);
  Eigen::Map<const typename LightFactors<T>::Vector> offset_term(in.offset_term, d);
  for (const T reg : light.values) {
    ColMatrix matrix = gram;
    matrix.diagonal().array() += reg;
    Eigen::LLT<ColMatrix, Eigen::Lower> cholesky(matrix);
    light.ok.push_back(cholesky.info() == Eigen::Success);
    light.lower.push_back(cholesky.matrixL());
    light.offset.push_back(cholesky.matrixL().solve(offset_term));
  }
  return light;
}

}  // namespace

template <typename T>
class WalsSolveRowsOp : public OpKernel {
 public:
  explicit WalsSolveRowsOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string solver;
    OP_REQUIRES_OK(context, context->GetAttr("solver", &solver));
    cholesky_ = solver == "cholesky";
    OP_REQUIRES_OK(context, context->GetAttr("cg_steps", &cg_steps_));
    OP_REQUIRES_OK(context, context->GetAttr("light_solve", &light_solve_));
    OP_REQUIRES_OK(context, context->GetAttr("target_from_extra", &target_from_extra_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& design = context->input(0);
    const Tensor& offsets = context->input(1);
    const Tensor& gram = context->input(2);
    const Tensor& offset_term = context->input(3);
    const Tensor& indptr = context->input(4);
    const Tensor& indices = context->input(5);
    const Tensor& extra = context->input(6);
    const Tensor& weighted_target = context->input(7);
    const Tensor& regularization = context->input(8);
    const Tensor& start = context->input(9);

    const auto InvalidArgument = [](const char* message) { return absl::InvalidArgumentError(message); };
    OP_REQUIRES(context, design.dims() == 2, InvalidArgument("design must be 2-D"));
    const int64_t n_other = design.dim_size(0);
    const int64_t d = design.dim_size(1);
    const int64_t n_rows = regularization.NumElements();
    OP_REQUIRES(context, offsets.NumElements() == n_other,
                InvalidArgument("offsets must have one value per design row"));
    OP_REQUIRES(context, gram.NumElements() == d * d, InvalidArgument("gram must be d x d"));
    OP_REQUIRES(context, offset_term.NumElements() == d,
                InvalidArgument("offset term must have d values"));
    OP_REQUIRES(context, indptr.NumElements() == n_rows + 1,
                InvalidArgument("indptr must have n_rows + 1 values"));
    const int64_t nnz = indices.NumElements();
    OP_REQUIRES(context, extra.NumElements() == nnz,
                InvalidArgument("extra must have one value per entry"));
    OP_REQUIRES(context, weighted_target.NumElements() == (target_from_extra_ ? 1 : nnz),
                InvalidArgument(target_from_extra_
                                    ? "weighted_target must be one value (w0) with target_from_extra"
                                    : "weighted_target must have one value per entry"));
    OP_REQUIRES(context, cholesky_ || start.NumElements() == n_rows * d,
                InvalidArgument("start must be n_rows x d"));
    const int64_t* pointers = indptr.flat<int64_t>().data();
    OP_REQUIRES(context, pointers[0] == 0 && pointers[n_rows] == nnz,
                InvalidArgument("indptr must start at 0 and end at the number of entries"));
    for (int64_t row = 0; row < n_rows; ++row) {
      OP_REQUIRES(context, pointers[row] <= pointers[row + 1],
                  InvalidArgument("indptr must be non-decreasing"));
    }
    const int32_t* other = indices.flat<int32_t>().data();
    for (int64_t j = 0; j < nnz; ++j) {
      OP_REQUIRES(context, other[j] >= 0 && other[j] < n_other,
                  InvalidArgument("entry index out of range of the design rows"));
    }

    Tensor* solution = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, TensorShape({n_rows, d}), &solution));
    if (n_rows == 0) return;
    Inputs<T> inputs{static_cast<int>(d),
                  n_other,
                  design.flat<T>().data(),
                  offsets.flat<T>().data(),
                  gram.flat<T>().data(),
                  offset_term.flat<T>().data(),
                  pointers,
                  other,
                  extra.flat<T>().data(),
                  weighted_target.flat<T>().data(),
                  target_from_extra_,
                  regularization.flat<T>().data(),
                  cholesky_ ? nullptr : start.flat<T>().data()};
    T* output = solution->flat<T>().data();

    // Light rows (cholesky): Woodbury against a factorization of G + reg I shared by the rows.
    const bool always = light_solve_ == "always";
    int64_t light_max_length = -1;  // rows with at most this many entries take the light solve
    if (cholesky_ && light_solve_ != "never") {
      light_max_length = always ? std::numeric_limits<int64_t>::max() : LightMaxLength(d);
    }
    LightFactors<T> light;
    if (light_max_length >= 0) {
      light = FactorLightRows(inputs, n_rows, light_max_length, always);
    }

    // Blocks of consecutive rows of about equal cost, several per thread for balance (row
    // lengths follow a power law): a row costs its entries times the passes over them, plus
    // its dense d x d work (about 2 d^2 for a light row).
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int threads = std::max(1, workers->NumThreads());
    const double passes = cholesky_ ? static_cast<double>(d) : 2.0 * (cg_steps_ + 1);
    const double dense = cholesky_ ? d * d / 3.0 + d : static_cast<double>(cg_steps_ + 1) * d;
    const auto row_cost = [&](int64_t row) {
      const int64_t length = pointers[row + 1] - pointers[row];
      const double light_dense = length <= light_max_length ? 2.0 + length : dense;
      return length * passes * d + light_dense * d;
    };
    double total = 0;
    for (int64_t row = 0; row < n_rows; ++row) total += row_cost(row);
    const double target = total / (16.0 * threads);
    std::vector<int64_t> bounds{0};
    double cost = 0;
    for (int64_t row = 0; row < n_rows; ++row) {
      cost += row_cost(row);
      if (cost >= target && row + 1 < n_rows) {
        bounds.push_back(row + 1);
        cost = 0;
      }
    }
    bounds.push_back(n_rows);
    const bool cholesky = cholesky_;
    const int cg_steps = cg_steps_;
    const LightFactors<T>* factors = light.values.empty() ? nullptr : &light;
    workers->ParallelFor(
        static_cast<int64_t>(bounds.size()) - 1,
        [&inputs, &bounds, output, d, cholesky, cg_steps, factors, light_max_length,
         pointers](int64_t begin, int64_t end) {
          RowSolver<T> solver(inputs, cg_steps, factors);
          for (int64_t b = begin; b < end; ++b) {
            for (int64_t row = bounds[b]; row < bounds[b + 1]; ++row) {
              if (pointers[row + 1] == pointers[row]) {
                // A row without entries has no information: exactly zero (factors and bias),
                // whatever the solver (CG would keep part of its warm start).
                std::fill(output + row * d, output + (row + 1) * d, T(0));
                continue;
              }
              if (cholesky) {
                const bool light_row = pointers[row + 1] - pointers[row] <= light_max_length;
                if (!(light_row && solver.SolveLight(row, output + row * d))) {
                  solver.SolveCholesky(row, output + row * d);
                }
              } else {
                solver.SolveCg(row, output + row * d);
              }
            }
          }
        });
  }

 private:
  bool cholesky_ = false;
  int cg_steps_ = 3;
  std::string light_solve_ = "auto";
  bool target_from_extra_ = false;
};

#define REGISTER(T) \
  REGISTER_KERNEL_BUILDER(  \
      Name("WalsSolveRows").Device(DEVICE_CPU).TypeConstraint<T>("T"), WalsSolveRowsOp<T>)
REGISTER(float);
REGISTER(double);
#undef REGISTER

}  // namespace walsrec
