// minGRU and minLSTM (Feng et al. 2024), the scan and the whole layer, forward and backward:
// h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t from this step's input only (rnnlab/cells/min_rnn.py):
// minGRU [k_z k_h]: a = 1 − z, b = z g(k_h); minLSTM [k_f k_i k_h]: a = f/(f+i), b = i/(f+i) g(k_h),
// with g(x) = x + 0.5 (x ≥ 0), σ(x) (x < 0). No matmul inside the loop, so the scan is one
// streaming pass over memory, split over rows; nothing is saved (backward recomputes the gates
// from x_proj and reads h_{t-1} from the outputs).
//
// Every sigmoid is σ(x) = 1/p with p = 1 + e^{-x}, and 1 − σ(x) = e^{-x}/p. The gates of one element
// need two or three such reciprocals (and the minLSTM its 1/(f + i)); a vector division costs
// several FMAs, and the minGRU step with one division instead of two ran 20% faster (measured,
// float32, AVX2), so its element takes ONE division and gets both reciprocals from it:
// 1/p₁ = p₂ r and 1/p₂ = p₁ r for r = 1/(p₁ p₂). The exponents are clamped to
// ±kExpLimit so that the product stays finite; σ is then exact to the type's precision wherever
// it is not within e^{-kExpLimit} of 0 or 1.
//
// Not so the minLSTM's f and i: f' = f/(f + i) depends on their ratio, which stays meaningful when
// both are tiny (k_f, k_i ≪ 0), so their exponents are clamped only where e^{-x} would overflow
// (kRatioLimit), and 1/(p_f + p_i) takes a division of its own.
//
// Two kernels: the scan alone, on k = W x precomputed (min_rnn_forward / min_rnn_backward), and the
// whole layer with its input projection fused in tiles (min_rnn_layer_forward / _backward, below).

#include "recurrent.h"

#include <dlfcn.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace rnnlab {
namespace {

template <typename T>
struct MinMath {
  static constexpr T kExpLimit = std::is_same_v<T, float> ? T(40) : T(300);
  static constexpr T kRatioLimit = std::is_same_v<T, float> ? T(87) : T(700);
  // e^{-x} with x clamped to ±Limit
  template <T Limit = kExpLimit>
  static RNNLAB_INLINE T exp_minus(T x) {
    x = x < -Limit ? -Limit : (x > Limit ? Limit : x);
    if constexpr (std::is_same_v<T, float>) {
      return exp_float(-x);
    } else {
      return std::exp(-x);
    }
  }
};

// exp_minus and the row steps below are forced inline (RNNLAB_INLINE, see exp_float): in this
// translation unit alone, smaller than the single one the kernels once were, gcc's growth limits
// left exp_minus out of line, and the step loops that call it scalar (and rounding differently).

// One step of one row: h_t from k = W x_t (without b; c is b) and h_{t-1} in h_row (updated in place).
// minGRU: z = 1/p_z, σ(k_h) = 1/p_h (used where k_h < 0), h_t = h_{t-1} + z (g(k_h) − h_{t-1}).
// minLSTM: f = 1/p_f, i = 1/p_i, so f' = p_i/(p_f + p_i), i' = p_f/(p_f + p_i), and
// h_t = (p_i h_{t-1} + p_f g(k_h)) / (p_f + p_i).
// With Save, also what the backward step needs, so that it computes no exponential and no
// division (min_rnn_saved_row_backward): minGRU [z, ±h~], minLSTM [f', q, ±h~], where ±h~ carries
// the sign of k_h (h~ > 0 always), the branch of g that h~ came from.
template <typename T, bool Save = false>
RNNLAB_INLINE void min_rnn_step_row(const T* k, const T* c, T* h_row, T* out_row, std::int64_t hidden, bool lstm,
                                    T* saved = nullptr) {
  using M = MinMath<T>;
  if (lstm) {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T e_f = M::template exp_minus<M::kRatioLimit>(k[j] + c[j]);
      const T e_i = M::template exp_minus<M::kRatioLimit>(k[hidden + j] + c[hidden + j]);
      const T p_f = T(1) + e_f, p_i = T(1) + e_i;
      const T k_h = k[2 * hidden + j] + c[2 * hidden + j];
      const T p_h = T(1) + M::exp_minus(k_h < T(0) ? k_h : T(0));  // only read where k_h < 0
      const T q = T(1) / (p_f + p_i);
      const T h_tilde = k_h >= T(0) ? k_h + T(0.5) : T(1) / p_h;
      const T f_prime = p_i * q, i_prime = p_f * q;
      const T h_t = f_prime * h_row[j] + i_prime * h_tilde;
      out_row[j] = h_t;
      h_row[j] = h_t;
      if constexpr (Save) {
        saved[j] = f_prime;
        saved[hidden + j] = q;
        saved[2 * hidden + j] = k_h >= T(0) ? h_tilde : -h_tilde;
      }
    }
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T p_z = T(1) + M::exp_minus(k[j] + c[j]);
      const T k_h = k[hidden + j] + c[hidden + j];
      const T p_h = T(1) + M::exp_minus(k_h < T(0) ? k_h : T(0));
      const T r = T(1) / (p_z * p_h);
      const T z_t = p_h * r;
      const T h_tilde = k_h >= T(0) ? k_h + T(0.5) : p_z * r;
      const T h_t = h_row[j] + z_t * (h_tilde - h_row[j]);
      out_row[j] = h_t;
      h_row[j] = h_t;
      if constexpr (Save) {
        saved[j] = z_t;
        saved[hidden + j] = k_h >= T(0) ? h_tilde : -h_tilde;
      }
    }
  }
}

// Its backward: from dh_t = g_row + dh_row, the gradient of k into d_row and dh_{t-1} into dh_row.
// d_row may be k itself (each j reads its entries before writing them). With e = p − 1:
// σ'(x) = σ(1 − σ) = e/p²; minGRU: dk_z = dh (h~ − h_{t-1}) e_z z², dk_h = dh z g'(k_h),
// dh_{t-1} = dh e_z z; minLSTM, q = 1/(p_f + p_i), f' = p_i q, i' = p_f q = 1 − f', so that
// h_t = f' h_{t-1} + (1 − f') h~ and ∂f'/∂k_f = f' i' (1 − f) = f' e_f q, ∂f'/∂k_i = −f' i' (1 − i) = −i' e_i q:
// dk_f = dh (h_{t-1} − h~) f' e_f q, dk_i = −dh (h_{t-1} − h~) i' e_i q, dk_h = dh i' g'(k_h), dh_{t-1} = dh f'.
template <typename T>
RNNLAB_INLINE void min_rnn_step_row_backward(const T* k, const T* c, const T* g_row, const T* h_prev, T* dh_row,
                                             T* d_row, std::int64_t hidden, bool lstm) {
  using M = MinMath<T>;
  if (lstm) {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T e_f = M::template exp_minus<M::kRatioLimit>(k[j] + c[j]);
      const T e_i = M::template exp_minus<M::kRatioLimit>(k[hidden + j] + c[hidden + j]);
      const T k_h = k[2 * hidden + j] + c[2 * hidden + j];
      const T e_h = M::exp_minus(k_h < T(0) ? k_h : T(0));
      const T p_f = T(1) + e_f, p_i = T(1) + e_i, p_h = T(1) + e_h;
      const T q = T(1) / (p_f + p_i), sigma_h = T(1) / p_h;
      const T f_prime = p_i * q, i_prime = p_f * q;
      const T h_tilde = k_h >= T(0) ? k_h + T(0.5) : sigma_h;
      const T g_slope = k_h >= T(0) ? T(1) : e_h * sigma_h * sigma_h;
      const T dh = g_row[j] + dh_row[j];
      const T d_gate = dh * (h_prev[j] - h_tilde);  // d f' − d i'
      d_row[j] = d_gate * f_prime * (e_f * q);
      d_row[hidden + j] = -d_gate * i_prime * (e_i * q);
      d_row[2 * hidden + j] = dh * i_prime * g_slope;
      dh_row[j] = dh * f_prime;
    }
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T e_z = M::exp_minus(k[j] + c[j]);
      const T k_h = k[hidden + j] + c[hidden + j];
      const T e_h = M::exp_minus(k_h < T(0) ? k_h : T(0));
      const T p_z = T(1) + e_z, p_h = T(1) + e_h;
      const T r = T(1) / (p_z * p_h);
      const T z_t = p_h * r, sigma_h = p_z * r;
      const T h_tilde = k_h >= T(0) ? k_h + T(0.5) : sigma_h;
      const T g_slope = k_h >= T(0) ? T(1) : e_h * sigma_h * sigma_h;
      const T dh = g_row[j] + dh_row[j];
      const T dh_z = dh * e_z * z_t;  // dh (1 − z)
      d_row[j] = dh_z * (h_tilde - h_prev[j]) * z_t;
      d_row[hidden + j] = dh * z_t * g_slope;
      dh_row[j] = dh_z;
    }
  }
}

// [T, B, features] tensors are read and written through their strides: a batch-first layer hands
// its [B, T, ·] projection over as a transposed view, so nothing is copied on the way in or out.
struct Strides {
  std::int64_t time, row;
  explicit Strides(const Tensor& tensor) : time(tensor.stride(0)), row(tensor.stride(1)) {}
  std::int64_t at(std::int64_t t, std::int64_t b) const { return t * time + b * row; }
};

// An uninitialised [T, B, features] tensor laid out like `like` (time-major, or batch-major viewed
// as [T, B, ·]).
Tensor empty_like_layout(const Tensor& like, std::int64_t features) {
  const std::int64_t steps = like.size(0), batch = like.size(1);
  if (like.stride(1) > like.stride(0))
    return at::empty({batch, steps, features}, like.options()).transpose(0, 1);
  return at::empty({steps, batch, features}, like.options());
}

// Visits (t, b) in time order for each row (backward: reverse time), in the order that streams
// through memory: batch-major data row by row, time-major data step by step; rows split over threads.
template <typename F>
void scan_rows(const Tensor& layout, std::int64_t work, bool reverse, const F& body) {
  const std::int64_t steps = layout.size(0), batch = layout.size(1);
  const bool batch_major = layout.stride(1) > layout.stride(0);
  const std::int64_t grain = std::max<std::int64_t>(1, 65536 / std::max<std::int64_t>(1, work));
  at::parallel_for(0, batch, grain, [&](std::int64_t begin, std::int64_t end) {
    if (batch_major) {
      for (std::int64_t b = begin; b < end; ++b)
        for (std::int64_t i = 0; i < steps; ++i) body(reverse ? steps - 1 - i : i, b);
    } else {
      for (std::int64_t i = 0; i < steps; ++i)
        for (std::int64_t b = begin; b < end; ++b) body(reverse ? steps - 1 - i : i, b);
    }
  });
}

// The backward step from what min_rnn_step_row<T, true> saved (`saved`), with dh_t = g_row + dh_row:
// dk into d_row, dh_{t-1} into dh_row. g'(k_h) = 1 where k_h ≥ 0, else σ(1 − σ) = h~ (1 − h~).
// minGRU: dk_z = dh (h~ − h_{t-1}) z (1 − z), dk_h = dh z g', dh_{t-1} = dh (1 − z);
// minLSTM: dk_f = dh (h_{t-1} − h~) f' i' (1 − f), dk_i = −dh (h_{t-1} − h~) f' i' (1 − i),
// dk_h = dh i' g' with i' = 1 − f', dh_{t-1} = dh f', where i' (1 − f) = e_f q = i' − q and
// f' (1 − i) = e_i q = f' − q (i' = p_f q = q + e_f q).
template <typename T>
RNNLAB_INLINE void min_rnn_saved_row_backward(const T* saved, const T* g_row, const T* h_prev, T* dh_row, T* d_row,
                                              std::int64_t hidden, bool lstm) {
  if (lstm) {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T f_prime = saved[j], q = saved[hidden + j], signed_h = saved[2 * hidden + j];
      const T i_prime = T(1) - f_prime;
      const T h_tilde = std::abs(signed_h);
      const T g_slope = signed_h >= T(0) ? T(1) : h_tilde * (T(1) - h_tilde);
      const T dh = g_row[j] + dh_row[j];
      const T d_gate = dh * (h_prev[j] - h_tilde);
      d_row[j] = d_gate * f_prime * (i_prime - q);  // e_f q = (p_f − 1) q = i' − q
      d_row[hidden + j] = -d_gate * i_prime * (f_prime - q);
      d_row[2 * hidden + j] = dh * i_prime * g_slope;
      dh_row[j] = dh * f_prime;
    }
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T z_t = saved[j], signed_h = saved[hidden + j];
      const T h_tilde = std::abs(signed_h);
      const T g_slope = signed_h >= T(0) ? T(1) : h_tilde * (T(1) - h_tilde);
      const T dh = g_row[j] + dh_row[j];
      d_row[j] = dh * (h_tilde - h_prev[j]) * z_t * (T(1) - z_t);
      d_row[hidden + j] = dh * z_t * g_slope;
      dh_row[j] = dh * (T(1) - z_t);
    }
  }
}

template <typename T>
std::vector<Tensor> min_rnn_forward_impl(const Tensor& x_proj, const Tensor& bias, const Tensor& h0,
                                         const OptionalTensor& lengths, bool lstm) {
  const std::int64_t steps = x_proj.size(0), hidden = h0.size(1);
  const std::int64_t gates = (lstm ? 3 : 2) * hidden;
  Tensor output = empty_like_layout(x_proj, hidden);
  Tensor h = h0.clone();
  const Lengths valid = read_lengths(lengths);
  const Strides x_at(x_proj), out_at(output);
  const T* x_data = x_proj.data_ptr<T>();
  const T* c = bias.data_ptr<T>();  // b, added here rather than by an addmm that first copies it everywhere
  T* out_data = output.data_ptr<T>();
  T* h_data = h.data_ptr<T>();
  scan_rows(x_proj, steps * gates, false, [&](std::int64_t t, std::int64_t b) {
    T* out_row = out_data + out_at.at(t, b);
    if (!valid.valid(b, t)) {
      for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
      return;
    }
    min_rnn_step_row(x_data + x_at.at(t, b), c, h_data + b * hidden, out_row, hidden, lstm);
  });
  return {output, h};
}

template <typename T>
std::vector<Tensor> min_rnn_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                          const Tensor& bias, const Tensor& h0, const Tensor& output,
                                          const OptionalTensor& lengths, bool lstm) {
  const std::int64_t hidden = h0.size(1), steps = x_proj.size(0);
  const std::int64_t gates = (lstm ? 3 : 2) * hidden;
  Tensor d_x = empty_like_layout(x_proj, gates);
  Tensor dh_next = grad_h_last.clone();
  const Lengths valid = read_lengths(lengths);
  const Strides x_at(x_proj), g_at(grad_output), out_at(output), d_at(d_x);
  const T* x_data = x_proj.data_ptr<T>();
  const T* c = bias.data_ptr<T>();
  const T* g_data = grad_output.data_ptr<T>();
  const T* out_data = output.data_ptr<T>();
  const T* h0_data = h0.data_ptr<T>();
  T* d_data = d_x.data_ptr<T>();
  T* dh_data = dh_next.data_ptr<T>();
  scan_rows(x_proj, steps * gates, true, [&](std::int64_t t, std::int64_t b) {
    T* d_row = d_data + d_at.at(t, b);
    if (!valid.valid(b, t)) {
      for (std::int64_t j = 0; j < gates; ++j) d_row[j] = 0;
      return;
    }
    const T* h_prev = t > 0 ? out_data + out_at.at(t - 1, b) : h0_data + b * hidden;
    min_rnn_step_row_backward(x_data + x_at.at(t, b), c, g_data + g_at.at(t, b), h_prev, dh_data + b * hidden, d_row,
                              hidden, lstm);
  });
  return {d_x, dh_next};
}

// ------------------------------------------------------------------- GEMM on raw pointers
// C[m, n] = op(A) op(B) (+ C when accumulate), row-major with leading dimensions: the tiles of the
// min-RNN layer below run three such products each, and at::mm_out on fresh tensor views costs
// a few µs per call in the dispatcher, a tenth of a tile's arithmetic. MKL's Fortran sgemm_ /
// dgemm_, which libtorch_cpu exports, are looked up at run time and checked once against at::mm
// (every transpose combination, both types); anything missing or different leaves at::mm_out on
// views. The integer arguments are passed as pointers to int64: an LP64 BLAS reads their low half,
// which on a little-endian machine is the same number.
class Blas {
 public:
  static const Blas& get() {
    static const Blas instance;
    return instance;
  }

  template <typename T>
  void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda,
            const T* b, std::int64_t ldb, bool accumulate, T* c, std::int64_t ldc) const {
    if (m == 0 || n == 0) return;
    const T beta = accumulate ? T(1) : T(0), alpha = T(1);
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm_ != nullptr) {  // row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ
        sgemm_(trans_b ? "T" : "N", trans_a ? "T" : "N", &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
        return;
      }
    } else {
      if (dgemm_ != nullptr) {
        dgemm_(trans_b ? "T" : "N", trans_a ? "T" : "N", &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
        return;
      }
    }
    aten_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
  }

 private:
  template <typename T>
  using Fortran = void (*)(const char*, const char*, const std::int64_t*, const std::int64_t*, const std::int64_t*,
                           const T*, const T*, const std::int64_t*, const T*, const std::int64_t*, const T*, T*,
                           const std::int64_t*);

  template <typename T>
  static void aten_gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                        std::int64_t lda, const T* b, std::int64_t ldb, bool accumulate, T* c, std::int64_t ldc) {
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    auto view = [&](const T* data, std::int64_t rows, std::int64_t columns, std::int64_t ld, bool transposed) {
      Tensor stored = at::from_blob(const_cast<T*>(data), {transposed ? columns : rows, transposed ? rows : columns},
                                    {ld, 1}, options);
      return transposed ? stored.t() : stored;
    };
    Tensor out = at::from_blob(c, {m, n}, {ldc, 1}, options);
    const Tensor left = view(a, m, k, lda, trans_a), right = view(b, k, n, ldb, trans_b);
    if (accumulate) {
      out.addmm_(left, right);
    } else {
      at::mm_out(out, left, right);
    }
  }

  Blas() {
    if constexpr (std::endian::native != std::endian::little) return;
    void* library = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (library == nullptr) return;
    sgemm_ = reinterpret_cast<Fortran<float>>(dlsym(library, "sgemm_"));
    dgemm_ = reinterpret_cast<Fortran<double>>(dlsym(library, "dgemm_"));
    if (sgemm_ != nullptr && !agrees_with_aten<float>()) sgemm_ = nullptr;
    if (dgemm_ != nullptr && !agrees_with_aten<double>()) dgemm_ = nullptr;
  }

  template <typename T>
  bool agrees_with_aten() const {
    const c10::NoGradGuard no_grad;
    const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    for (const bool trans_a : {false, true}) {
      for (const bool trans_b : {false, true}) {
        const std::int64_t m = 5, n = 9, k = 7;
        Tensor a = probe_matrix(trans_a ? k : m, trans_a ? m : k, 1, options);
        Tensor b = probe_matrix(trans_b ? n : k, trans_b ? k : n, 2, options);
        Tensor c = probe_matrix(m, n, 3, options);
        Tensor expected = c + at::mm(trans_a ? a.t() : a, trans_b ? b.t() : b);
        gemm<T>(trans_a, trans_b, m, n, k, a.data_ptr<T>(), a.size(1), b.data_ptr<T>(), b.size(1), true,
                c.data_ptr<T>(), n);
        if (!at::allclose(c, expected, 1e-4, 1e-5)) return false;
      }
    }
    return true;
  }

  Fortran<float> sgemm_ = nullptr;
  Fortran<double> dgemm_ = nullptr;
};

// ------------------------------------------------- minGRU, minLSTM: the whole layer, fused
// The scan above takes k = W x precomputed: a [T, B, gates·H] tensor that one GEMM writes and the
// scan reads, whose gradient the backward scan writes and two GEMMs and a sum read again. For a
// layer whose recurrence is a few flops per element, that traffic through memory is most of the
// time. Here each thread takes some rows and walks them through time in tiles of about a hundred
// (step, row) pairs: the tile's k = x W^T is one small GEMM into a buffer that stays in cache, and
// the scan runs on it at once. The forward step also saves the gate values its backward needs
// (min_rnn_step_row<T, true>), so the backward step is a few multiplications per element: it
// writes dk into a tile buffer and, still in cache, dk W into dx, dk^T x into the thread's dW and
// Σ dk into its db. (Recomputing k in backward instead, as a first version did, saves that memory
// but costs a GEMM and two exponentials and a division per element again: measured 1.9× slower
// backward.)
//
// A tile follows the memory order of the data. Batch-major data (a batch_first layer's, viewed
// [T, B, ·]): one row over consecutive steps, which are consecutive in memory, so x, dx, the
// output and its gradient stream row by row and the GEMMs read and write them in place. Time-major
// data: a few steps of the thread's rows, step by step (a row's steps are B rows apart, too far for
// the prefetcher), gathered into a buffer where they are not evenly spaced. Walking batch-major
// data step by step instead reads B streams a whole row of the sequence apart: measured, most of
// the backward scan's time went to those cache misses.

// (step, row) pairs per tile: the tile's k (gates wide) in about 128 KB, well inside L2.
std::int64_t min_rnn_tile_pairs(std::int64_t gates, std::int64_t element_size) {
  return std::clamp<std::int64_t>(131072 / (element_size * gates), 8, 1024);
}

// `steps` steps from t0 of the rows b0 .. b0 + width, step-major: pair p is step t0 + p / width of
// row b0 + p % width. `active`: pairs [0, active) may run; the rest lie past their row's length
// (computed for one-row tiles, where that is a suffix; else all pairs, each checked).
struct Tile {
  std::int64_t t0, steps, b0, width, active;
  std::int64_t pairs() const { return steps * width; }
  std::int64_t step(std::int64_t p) const { return t0 + p / width; }
  std::int64_t row(std::int64_t p) const { return b0 + p % width; }
  // The distance between consecutive pairs' rows in a tensor with these strides, or 0 when they
  // are not evenly spaced.
  std::int64_t spacing(const Strides& strides) const {
    if (width == 1) return strides.time;
    if (steps == 1 || strides.time == width * strides.row) return strides.row;
    return 0;
  }
};

// The tiles of rows [begin, end) in time order for each row (see above).
std::vector<Tile> min_rnn_tiles(const Tensor& x, std::int64_t begin, std::int64_t end, std::int64_t tile_pairs,
                                const Lengths& valid) {
  const std::int64_t steps = x.size(0), rows = end - begin;
  std::vector<Tile> tiles;
  if (x.stride(1) > x.stride(0)) {
    for (std::int64_t b = begin; b < end; ++b) {
      const std::int64_t length = valid.data == nullptr ? steps : valid.data[b];
      for (std::int64_t t0 = 0; t0 < steps; t0 += tile_pairs) {
        const std::int64_t n = std::min(tile_pairs, steps - t0);
        tiles.push_back({t0, n, b, 1, std::clamp<std::int64_t>(length - t0, 0, n)});
      }
    }
  } else {
    const std::int64_t block_steps = std::max<std::int64_t>(1, tile_pairs / rows);
    for (std::int64_t t0 = 0; t0 < steps; t0 += block_steps) {
      const std::int64_t n = std::min(block_steps, steps - t0);
      tiles.push_back({t0, n, begin, rows, n * rows});
    }
  }
  return tiles;
}

// The tile's rows of x as a matrix: in place when evenly spaced, else copied into `buffer`.
// Returns the first row and the leading dimension.
template <typename T>
std::pair<const T*, std::int64_t> tile_rows(const Tensor& x, const Tile& tile, T* buffer) {
  const Strides at_x(x);
  const T* data = x.data_ptr<T>();
  if (const std::int64_t spacing = tile.spacing(at_x)) return {data + at_x.at(tile.t0, tile.b0), spacing};
  const std::int64_t width = x.size(2);
  for (std::int64_t p = 0; p < tile.active; ++p)
    std::copy_n(data + at_x.at(tile.step(p), tile.row(p)), width, buffer + p * width);
  return {buffer, width};
}

// Saved for backward per (step, row): min_rnn_step_row's gate values, 2H (minGRU) or 3H (minLSTM).
std::int64_t min_rnn_saved_width(std::int64_t hidden, bool lstm) { return (lstm ? 3 : 2) * hidden; }

template <typename T>
std::vector<Tensor> min_rnn_layer_forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                               const Tensor& h0, const OptionalTensor& lengths, bool lstm, bool save) {
  const std::int64_t batch = x.size(1), inputs = x.size(2), hidden = h0.size(1);
  const std::int64_t gates = (lstm ? 3 : 2) * hidden, tile_pairs = min_rnn_tile_pairs(gates, sizeof(T));
  Tensor output = empty_like_layout(x, hidden);
  Tensor saved = save ? empty_like_layout(x, min_rnn_saved_width(hidden, lstm)) : undefined();
  Tensor h = h0.clone();
  const Lengths valid = read_lengths(lengths);
  const Strides out_at(output), saved_at(save ? saved : output);
  const Blas& blas = Blas::get();
  const T* w = weight.data_ptr<T>();
  const T* c = bias.data_ptr<T>();
  T* out_data = output.data_ptr<T>();
  T* saved_data = save ? saved.data_ptr<T>() : nullptr;
  T* h_data = h.data_ptr<T>();
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    std::vector<T> x_buffer(tile_pairs * inputs), k_buffer(tile_pairs * gates);
    for (const Tile& tile : min_rnn_tiles(x, begin, end, tile_pairs, valid)) {
      const auto [a, lda] = tile_rows<T>(x, tile, x_buffer.data());
      blas.gemm<T>(false, true, tile.active, gates, inputs, a, lda, w, inputs, false, k_buffer.data(), gates);
      for (std::int64_t p = 0; p < tile.pairs(); ++p) {
        const std::int64_t t = tile.step(p), b = tile.row(p);
        T* out_row = out_data + out_at.at(t, b);
        if (p >= tile.active || !valid.valid(b, t)) {  // (its saved row is never read)
          std::fill_n(out_row, hidden, T(0));
          continue;
        }
        const T* k = k_buffer.data() + p * gates;
        if (save)
          min_rnn_step_row<T, true>(k, c, h_data + b * hidden, out_row, hidden, lstm, saved_data + saved_at.at(t, b));
        else
          min_rnn_step_row<T>(k, c, h_data + b * hidden, out_row, hidden, lstm);
      }
    }
  });
  return {output, h, saved};
}

// The backward scan walks time downwards, reading for each pair its saved gates, the output's
// gradient and h_{t-1}; the hardware prefetchers do not follow rows that step backwards through
// memory (measured: without this, half the backward scan's time went to waiting for those loads),
// so each pair asks for the rows of the pair kPrefetchPairs ahead of it.
constexpr std::int64_t kPrefetchPairs = 4;

template <typename T>
inline void prefetch_row(const T* row, std::int64_t width) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (std::int64_t byte = 0; byte < width * static_cast<std::int64_t>(sizeof(T)); byte += 64)
    __builtin_prefetch(bytes + byte);
}

template <typename T>
std::vector<Tensor> min_rnn_layer_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x,
                                                const Tensor& weight, const Tensor& h0, const Tensor& output,
                                                const Tensor& saved, const OptionalTensor& lengths, bool lstm) {
  const std::int64_t batch = x.size(1), inputs = x.size(2), hidden = h0.size(1);
  const std::int64_t gates = (lstm ? 3 : 2) * hidden, tile_pairs = min_rnn_tile_pairs(gates, sizeof(T));
  const std::int64_t saved_width = min_rnn_saved_width(hidden, lstm);
  Tensor d_x = empty_like_layout(x, inputs);
  Tensor dh_next = grad_h_last.clone();
  const std::int64_t threads = at::get_num_threads();
  Tensor d_weight_parts = at::zeros({threads, gates, inputs}, x.options());
  std::vector<double> d_bias_parts(threads * gates, 0.0);
  const Lengths valid = read_lengths(lengths);
  const Strides g_at(grad_output), out_at(output), saved_at(saved), dx_at(d_x);
  const Blas& blas = Blas::get();
  const T* w = weight.data_ptr<T>();
  const T* g_data = grad_output.data_ptr<T>();
  const T* out_data = output.data_ptr<T>();
  const T* saved_data = saved.data_ptr<T>();
  const T* h0_data = h0.data_ptr<T>();
  T* dx_data = d_x.data_ptr<T>();
  T* dh_data = dh_next.data_ptr<T>();
  auto h_prev_row = [&](std::int64_t t, std::int64_t b) {
    return t > 0 ? out_data + out_at.at(t - 1, b) : h0_data + b * hidden;
  };
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t thread = at::get_thread_num();
    T* d_weight = d_weight_parts[thread].data_ptr<T>();
    double* d_bias = d_bias_parts.data() + thread * gates;
    std::vector<T> x_buffer(tile_pairs * inputs), dk_buffer(tile_pairs * gates), dx_buffer(tile_pairs * inputs);
    std::vector<T> tile_bias(gates);
    const std::vector<Tile> tiles = min_rnn_tiles(x, begin, end, tile_pairs, valid);
    for (auto tile = tiles.rbegin(); tile != tiles.rend(); ++tile) {
      const std::int64_t active = tile->active;
      T* dk = dk_buffer.data();
      std::fill(tile_bias.begin(), tile_bias.end(), T(0));
      for (std::int64_t p = active - 1; p >= 0; --p) {
        const std::int64_t t = tile->step(p), b = tile->row(p);
        T* dk_row = dk + p * gates;
        if (p >= kPrefetchPairs) {
          const std::int64_t ahead_t = tile->step(p - kPrefetchPairs), ahead_b = tile->row(p - kPrefetchPairs);
          prefetch_row(g_data + g_at.at(ahead_t, ahead_b), hidden);
          prefetch_row(saved_data + saved_at.at(ahead_t, ahead_b), saved_width);
          prefetch_row(h_prev_row(ahead_t, ahead_b), hidden);
        }
        if (!valid.valid(b, t)) {  // the state passed through: its gradient stays in dh_next
          std::fill_n(dk_row, gates, T(0));
          continue;
        }
        min_rnn_saved_row_backward(saved_data + saved_at.at(t, b), g_data + g_at.at(t, b), h_prev_row(t, b),
                                   dh_data + b * hidden, dk_row, hidden, lstm);
        T* sum = tile_bias.data();
#pragma omp simd
        for (std::int64_t j = 0; j < gates; ++j) sum[j] += dk_row[j];
      }
      // Σ dk: within a tile (at most a thousand pairs) in T, across tiles in double
      for (std::int64_t j = 0; j < gates; ++j) d_bias[j] += static_cast<double>(tile_bias[j]);
      if (active == 0) {
        for (std::int64_t p = 0; p < tile->pairs(); ++p)
          std::fill_n(dx_data + dx_at.at(tile->step(p), tile->row(p)), inputs, T(0));
        continue;
      }
      const auto [a, lda] = tile_rows<T>(x, *tile, x_buffer.data());
      blas.gemm<T>(true, false, gates, inputs, active, dk, gates, a, lda, true, d_weight, inputs);  // dW += dkᵀ x
      if (const std::int64_t spacing = tile->spacing(dx_at)) {  // dx = dk W, in place
        T* dx_rows = dx_data + dx_at.at(tile->t0, tile->b0);
        blas.gemm<T>(false, false, active, inputs, gates, dk, gates, w, inputs, false, dx_rows, spacing);
        for (std::int64_t p = active; p < tile->pairs(); ++p) std::fill_n(dx_rows + p * spacing, inputs, T(0));
      } else {
        blas.gemm<T>(false, false, active, inputs, gates, dk, gates, w, inputs, false, dx_buffer.data(), inputs);
        for (std::int64_t p = 0; p < tile->pairs(); ++p) {
          T* dx_row = dx_data + dx_at.at(tile->step(p), tile->row(p));
          if (p < active)
            std::copy_n(dx_buffer.data() + p * inputs, inputs, dx_row);
          else
            std::fill_n(dx_row, inputs, T(0));
        }
      }
    }
  });
  const auto options = x.options();
  Tensor d_bias = at::from_blob(d_bias_parts.data(), {threads, gates}, options.dtype(at::kDouble)).sum(0).to(options.dtype());
  return {d_x, dh_next, d_weight_parts.sum(0), d_bias};
}


// [T, B, F] contiguous, or the [T, B, F] view of a contiguous [B, T, F] (a batch-first layer's);
// anything else is copied into the first form.
Tensor inner_contiguous(const Tensor& tensor) {
  const bool batch_major = tensor.stride(2) == 1 && tensor.stride(0) == tensor.size(2) &&
                           tensor.stride(1) == tensor.size(0) * tensor.size(2);
  return tensor.is_contiguous() || batch_major ? tensor : tensor.contiguous();
}

// `tensor` [T, B, F] in the memory order of `like` (an output of the kernels), copied only if it differs:
// the backward scan walks its gradient in the order it walks the output.
Tensor in_layout_of(const Tensor& tensor, const Tensor& like) {
  if (tensor.strides() == like.strides()) return tensor;
  Tensor result = empty_like_layout(like, tensor.size(2));
  result.copy_(tensor);
  return result;
}

}  // namespace

std::vector<Tensor> min_rnn_forward(Tensor x_proj, OptionalTensor bias, Tensor h0, OptionalTensor lengths, bool lstm) {
  TORCH_CHECK(x_proj.dim() == 3 && h0.dim() == 2 && x_proj.size(2) == (lstm ? 3 : 2) * h0.size(1),
              "rnnlab min-RNN kernel: x_proj [T, B, gates·H] and h0 [B, H] expected, got ", x_proj.sizes(), " and ",
              h0.sizes());
  x_proj = inner_contiguous(x_proj), h0 = h0.contiguous(), lengths = contiguous_or_none(lengths);
  const Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::zeros({x_proj.size(2)}, x_proj.options());
  return RNNLAB_DISPATCH(x_proj, min_rnn_forward_impl<scalar_t>(x_proj, b, h0, lengths, lstm));
}

std::vector<Tensor> min_rnn_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, OptionalTensor bias,
                                     Tensor h0, Tensor output, OptionalTensor lengths, bool lstm) {
  const Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::zeros({x_proj.size(2)}, x_proj.options());
  grad_output = inner_contiguous(grad_output), grad_h_last = grad_h_last.contiguous();
  return RNNLAB_DISPATCH(x_proj, min_rnn_backward_impl<scalar_t>(grad_output, grad_h_last, x_proj, b, h0, output, lengths,
                                                                 lstm));
}

std::vector<Tensor> min_rnn_layer_forward(Tensor x, Tensor weight, OptionalTensor bias, Tensor h0,
                                          OptionalTensor lengths, bool lstm, bool save) {
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2 && weight.dim() == 2 && weight.size(0) == (lstm ? 3 : 2) * h0.size(1) &&
                  weight.size(1) == x.size(2) && h0.size(0) == x.size(1),
              "rnnlab min-RNN layer kernel: x [T, B, I], weight [gates·H, I] and h0 [B, H] expected, got ", x.sizes(),
              ", ", weight.sizes(), " and ", h0.sizes());
  x = inner_contiguous(x), weight = weight.contiguous(), h0 = h0.contiguous();
  lengths = contiguous_or_none(lengths);
  const Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::zeros({weight.size(0)}, x.options());
  return RNNLAB_DISPATCH(x, min_rnn_layer_forward_impl<scalar_t>(x, weight, b, h0, lengths, lstm, save));
}

// Returns dx, dh0, dW and db (Σ dk, also when the layer has no bias: the caller drops it).
std::vector<Tensor> min_rnn_layer_backward(Tensor grad_output, Tensor grad_h_last, Tensor x, Tensor weight, Tensor h0,
                                           Tensor output, Tensor saved, OptionalTensor lengths, bool lstm) {
  TORCH_CHECK(saved.defined(), "rnnlab min-RNN layer kernel: backward needs the forward's saved gates (save=True)");
  x = inner_contiguous(x), weight = weight.contiguous(), h0 = h0.contiguous();
  lengths = contiguous_or_none(lengths);
  grad_output = in_layout_of(grad_output, output), grad_h_last = grad_h_last.contiguous();
  return RNNLAB_DISPATCH(x, min_rnn_layer_backward_impl<scalar_t>(grad_output, grad_h_last, x, weight, h0, output,
                                                                  saved, lengths, lstm));
}

}  // namespace rnnlab
