// WalsSolveRows: one TensorFlow kernel that solves every row of one WALS half-step.
//
// For each row u (a user, or an item) with observed entries j in indices[indptr[u]:indptr[u+1]]
// it solves the normal equations
//
//     (G + reg_u I + sum_j extra_j q_j q_j^T) x_u = sum_j (wt_j - extra_j o_j) q_j - g
//
// where q_j = design[j] (the fixed side's factors, with a trailing 1 when biases are learned),
// o_j = offsets[j] (the fixed side's bias), G = unobserved_gram, g = unobserved_offset_term,
// extra_j = c_j - w0 and wt_j = c_j t_j. It is the same system as the TensorFlow-op solvers in
// wals.py (_normal_equations, _cg_chunk_solver); this kernel exists for speed:
//
// * No padding and no dispatch per chunk: rows are read straight from CSR arrays, and the work
//   is cut into blocks of about equal cost that TensorFlow's intra-op thread pool runs.
// * Each row gathers its q_j once into a contiguous scratch block that stays in cache for every
//   pass over it (the first residual and each CG step read it once: dot and update fused, four
//   entries at a time so the four dot products' reductions overlap).
// * "cholesky" forms the row's Gram matrix with Eigen's triangular matrix product (GEMM speed
//   instead of a batched matmul of tiny matrices), then a Cholesky solve.
//
// Rows are independent, so results do not depend on the number of threads. A Cholesky failure
// (not positive definite) writes NaN, as TensorFlow's batched Cholesky does on CPU; the caller
// checks for finite factors.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

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
    .Input("design: T")                  // [n_other, d]
    .Input("offsets: T")                 // [n_other]
    .Input("unobserved_gram: T")         // [d, d]
    .Input("unobserved_offset_term: T")  // [d]
    .Input("indptr: int64")              // [n_rows + 1]
    .Input("indices: int32")             // [nnz] index into design
    .Input("extra: T")                   // [nnz]
    .Input("weighted_target: T")         // [nnz]
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

// out += sum_j (base_j + weight_j (q_j . v)) q_j over the L rows of `block` (stride d).
// base may be null (0). Four entries at a time: their dot products are independent, so the
// horizontal reductions overlap, and `out` is loaded and stored once per four entries.
template <typename T>
inline void Pass(const T* block, int64_t length, int d, const T* base, const T* weight,
                 const T* v, T* out) {
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
  const T* weighted_target;
  const T* regularization;
  const T* start;  // null for cholesky
};

template <typename T>
class RowSolver {
 public:
  RowSolver(const Inputs<T>& in, int cg_steps) : in_(in), d_(in.d), cg_steps_(cg_steps) {}

  // Gathers the row's q_j into block_ and its right-hand-side coefficients
  // c_j = wt_j - extra_j o_j into base_; returns the row's length.
  int64_t Gather(int64_t row) {
    const int64_t first = in_.indptr[row];
    const int64_t length = in_.indptr[row + 1] - first;
    block_.resize(static_cast<size_t>(length * d_));
    base_.resize(static_cast<size_t>(length));
    for (int64_t j = 0; j < length; ++j) {
      const int64_t other = in_.indices[first + j];
      std::memcpy(block_.data() + j * d_, in_.design + other * d_, sizeof(T) * d_);
      base_[j] = in_.weighted_target[first + j] - in_.extra[first + j] * in_.offsets[other];
    }
    return length;
  }

  void SolveCg(int64_t row, T* x) {
    const int64_t length = Gather(row);
    const int64_t first = in_.indptr[row];
    const T* extra = in_.extra + first;
    const T regularization = in_.regularization[row];
    residual_.assign(d_, T(0));
    direction_.resize(d_);
    product_.resize(d_);
    negative_extra_.resize(static_cast<size_t>(length));
    for (int64_t j = 0; j < length; ++j) negative_extra_[j] = -extra[j];
    std::memcpy(x, in_.start + row * d_, sizeof(T) * d_);
    // r = sum_j (c_j - extra_j q_j.x) q_j - g - (G + reg I) x
    Pass(block_.data(), length, d_, base_.data(), negative_extra_.data(), x, residual_.data());
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
  std::vector<T> block_, base_, negative_extra_, residual_, direction_, product_, scaled_;
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> lhs_;
};

}  // namespace

template <typename T>
class WalsSolveRowsOp : public OpKernel {
 public:
  explicit WalsSolveRowsOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string solver;
    OP_REQUIRES_OK(context, context->GetAttr("solver", &solver));
    cholesky_ = solver == "cholesky";
    OP_REQUIRES_OK(context, context->GetAttr("cg_steps", &cg_steps_));
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
    OP_REQUIRES(context, extra.NumElements() == nnz && weighted_target.NumElements() == nnz,
                InvalidArgument("extra and weighted_target must have one value per entry"));
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
                  regularization.flat<T>().data(),
                  cholesky_ ? nullptr : start.flat<T>().data()};
    T* output = solution->flat<T>().data();

    // Blocks of consecutive rows of about equal cost, several per thread for balance (row
    // lengths follow a power law): a row costs its entries times the passes over them, plus
    // its dense d x d work.
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    const int threads = std::max(1, workers->NumThreads());
    const double passes = cholesky_ ? static_cast<double>(d) : 2.0 * (cg_steps_ + 1);
    const double dense = cholesky_ ? d * d / 3.0 + d : static_cast<double>(cg_steps_ + 1) * d;
    double total = 0;
    for (int64_t row = 0; row < n_rows; ++row) {
      total += (pointers[row + 1] - pointers[row]) * passes * d + dense * d;
    }
    const double target = total / (16.0 * threads);
    std::vector<int64_t> bounds{0};
    double cost = 0;
    for (int64_t row = 0; row < n_rows; ++row) {
      cost += (pointers[row + 1] - pointers[row]) * passes * d + dense * d;
      if (cost >= target && row + 1 < n_rows) {
        bounds.push_back(row + 1);
        cost = 0;
      }
    }
    bounds.push_back(n_rows);
    const bool cholesky = cholesky_;
    const int cg_steps = cg_steps_;
    workers->ParallelFor(
        static_cast<int64_t>(bounds.size()) - 1,
        [&inputs, &bounds, output, d, cholesky, cg_steps](int64_t begin, int64_t end) {
          RowSolver<T> solver(inputs, cg_steps);
          for (int64_t b = begin; b < end; ++b) {
            for (int64_t row = bounds[b]; row < bounds[b + 1]; ++row) {
              if (cholesky) {
                solver.SolveCholesky(row, output + row * d);
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
};

#define REGISTER(T) \
  REGISTER_KERNEL_BUILDER(  \
      Name("WalsSolveRows").Device(DEVICE_CPU).TypeConstraint<T>("T"), WalsSolveRowsOp<T>)
REGISTER(float);
REGISTER(double);
#undef REGISTER

}  // namespace walsrec
