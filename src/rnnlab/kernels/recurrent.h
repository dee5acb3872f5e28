// rnnlab's CPU kernels, the part every cell family shares: the loop over time of a cell, forward
// and backward, and what it runs on. The families have a file each (rnn.cpp, lstm.cpp, gru.cpp,
// min_rnn.cpp); recurrent.cpp holds the streaming Stepper and the Python bindings. build.py compiles
// each .cpp on its own, in parallel, and links them into one module.
//
// The equations are those of rnnlab/cells/*.py (the reference; read them first). What a kernel
// does differently from the reference loop is only *how* it runs them:
//
//   * the input projection W_ih x_t + b_ih of every step arrives precomputed (one large GEMM in
//     Python, under autograd), so the loop does one small GEMM per step, h_{t-1} W_hh^T, and a
//     single fused pass over the gates instead of a dozen separate tensor operations;
//   * each thread carries its own block of batch rows through the whole sequence (rows never
//     interact), so the threads never wait for each other between steps;
//   * backward is back-propagation through time written out: the gates saved by the forward pass
//     give each step's gradients in one fused pass, the recurrent gradient dh_{t-1} = dpre_t W_hh
//     is one small GEMM per step, and the weight gradient dW_hh = Σ_t dpre_t^T h_{t-1} is a single
//     large GEMM over all steps at the end (not T small ones).
//
// Variable lengths: steps t >= lengths[b] leave row b's state unchanged and output zero (as the
// reference loop's masks do); in backward the state's gradient passes through them unchanged.
// Layer norm (Ba et al. 2016): LN(h W_hh^T) ⊙ γ + b_hh, and in the LSTM tanh(LN(c_t) ⊙ γ_c + β_c).
// Recurrent dropout: h_{t-1} ⊙ m enters the GEMM; the carried state and the GRU's interpolation
// see the unmasked h_{t-1}.
//
// float32 uses polynomial exp/tanh written so that gcc vectorises the gate loops (a scalar libm
// call per element would cost more than the GEMM); float64 calls libm (it exists for gradcheck).
//
// Here, each with its equations at its code: σ and tanh (Math<T>); a row's layer norm
// x_hat = (x − mean) rstd, y = x_hat ⊙ γ + β, and its backward; the per-step product h_{t-1} W^T
// (StepProduct, MKL-packed); the time loop of the cells with one such product per step
// (ForwardLoop: hh_t = (h_{t-1} ⊙ m) W_hh^T, then the cell's gate pass on each row that runs;
// BackwardLoop: the cell's gate pass on each row from t = T−1 down, then dh_{t-1} += (d_raw_t W_hh) ⊙ m,
// and at the end dW_hh = Σ_t d_raw_t^T (h_{t-1} ⊙ m), db_hh = Σ d_hh, dγ = Σ d_hh ⊙ x_hat); the
// entry points that recurrent.cpp binds.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <dlfcn.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace rnnlab {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;

constexpr double kLayerNormEps = 1e-5;  // rnnlab.cells.base.LAYER_NORM_EPS

// ------------------------------------------------------------------------------------ math
// exp(x) for float, Cephes' expf: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial,
// 2^n put straight into the exponent bits. Branch-free, so loops calling it vectorise; relative
// error about 2e-7. Forced inline, as are the functions below that call it: a loop that calls an
// out-of-line function does not vectorise (gcc left the LSTM backward's tanh loops scalar calls).
#define RNNLAB_INLINE inline __attribute__((always_inline))
RNNLAB_INLINE float exp_float(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  constexpr float kRoundingShift = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + kRoundingShift;
  const float n = shifted - kRoundingShift;
  const std::int32_t n_int = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(kRoundingShift);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  return e_r * std::bit_cast<float>((n_int + 127) << 23);
}

template <typename T>
struct Math;

template <>
struct Math<float> {
  static RNNLAB_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_float(-x)); }
  // tanh: an odd polynomial near 0 (Cephes' tanhf, where 1 − 2/(e^{2x}+1) would cancel), else
  // 1 − 2/(e^{2|x|}+1) with the sign put back.
  static RNNLAB_INLINE float tanh(float x) {
    const float z = x * x;
    const float near_zero =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
         3.33332819422e-1f) * z * x + x;
    const float a = std::fabs(x);
    const float far = std::copysign(1.0f - 2.0f / (exp_float(2.0f * a) + 1.0f), x);
    return a < 0.625f ? near_zero : far;
  }
};

template <>
struct Math<double> {
  static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static inline double tanh(double x) { return std::tanh(x); }
};

// ------------------------------------------------------------------------------ layer norm
// x_hat = (x − mean) rstd: the last pass of normalise_row (normalise_affine_row computes the same
// expression), and backward's recomputation of it from the saved mean and rstd (the same bits).
template <typename T>
inline void centre_row(const T* x, T mean, T rstd, T* x_hat, std::int64_t n) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) x_hat[j] = (x[j] - mean) * rstd;
}

// One row's mean and rstd = 1 / sqrt(var + eps) (biased variance, as F.layer_norm). The sums run in
// double: a nearly constant row has a tiny variance, and its rounding error is divided by it.
template <typename T>
inline std::pair<T, T> row_moments(const T* x, std::int64_t n) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::int64_t j = 0; j < n; ++j) sum += x[j];
  const T mean = static_cast<T>(sum / static_cast<double>(n));
  double squares = 0;
#pragma omp simd reduction(+ : squares)
  for (std::int64_t j = 0; j < n; ++j) {
    const double centred = static_cast<double>(x[j]) - static_cast<double>(mean);
    squares += centred * centred;
  }
  const T rstd = static_cast<T>(1.0 / std::sqrt(squares / static_cast<double>(n) + kLayerNormEps));
  return {mean, rstd};
}

// x_hat = (x − mean) rstd of one row (see row_moments); returns rstd, and the mean into *mean_out.
template <typename T>
inline T normalise_row(const T* x, T* x_hat, std::int64_t n, T* mean_out = nullptr) {
  const auto [mean, rstd] = row_moments(x, n);
  centre_row(x, mean, rstd, x_hat, n);
  if (mean_out != nullptr) *mean_out = mean;
  return rstd;
}

// A row's layer norm and its affine map in one last pass: y = x_hat ⊙ γ (+ β with Shift), x_hat
// also written to x_hat with KeepHat (saved for backward; else backward recomputes it with
// centre_row, the same expression). y may be x. Returns rstd, and the mean into *mean_out.
template <bool KeepHat, bool Shift, typename T>
inline T normalise_affine_row(const T* x, std::type_identity_t<T>* x_hat, const T* gain,
                              const std::type_identity_t<T>* shift, T* y, std::int64_t n,
                              std::type_identity_t<T>* mean_out = nullptr) {
  const auto [mean, rstd] = row_moments(x, n);
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    const T hat = (x[j] - mean) * rstd;
    if constexpr (KeepHat) x_hat[j] = hat;
    if constexpr (Shift) {
      y[j] = hat * gain[j] + shift[j];
    } else {
      y[j] = hat * gain[j];
    }
  }
  if (mean_out != nullptr) *mean_out = mean;
  return rstd;
}

// Backward of y = x_hat ⊙ γ (+ β) for one row, given dy: dx = rstd (dŷ − mean(dŷ) − x_hat mean(dŷ ⊙ x_hat))
// with dŷ = dy ⊙ γ. Writes dx (may alias dy). With SumGain / SumShift it also adds this row's
// dγ = dy ⊙ x_hat into gain_sum and dβ = dy into shift_sum, in the same pass while the row is in cache.
template <bool SumGain = false, bool SumShift = false, typename T>
inline void normalise_row_backward(const T* dy, const T* gain, const T* x_hat, T rstd, T* dx, std::int64_t n,
                                   double* gain_sum = nullptr, double* shift_sum = nullptr) {
  double sum_d = 0, sum_dx = 0;
#pragma omp simd reduction(+ : sum_d, sum_dx)
  for (std::int64_t j = 0; j < n; ++j) {
    const double d = static_cast<double>(dy[j]) * static_cast<double>(gain[j]);
    sum_d += d;
    sum_dx += d * static_cast<double>(x_hat[j]);
    if constexpr (SumGain) gain_sum[j] += static_cast<double>(dy[j]) * static_cast<double>(x_hat[j]);
    if constexpr (SumShift) shift_sum[j] += static_cast<double>(dy[j]);
  }
  const T mean_d = static_cast<T>(sum_d / static_cast<double>(n));
  const T mean_dx = static_cast<T>(sum_dx / static_cast<double>(n));
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) dx[j] = rstd * (dy[j] * gain[j] - mean_d - x_hat[j] * mean_dx);
}

// ------------------------------------------------------------------------------- plumbing
template <typename T>
const T* ptr_or_null(const OptionalTensor& tensor) {
  return tensor.has_value() && tensor->defined() ? tensor->data_ptr<T>() : nullptr;
}

// The data of a tensor that may be undefined (a buffer only some configurations use), else nullptr:
// taken once before the loops, not per row and step.
template <typename T>
T* data_or_null(const Tensor& tensor) {
  return tensor.defined() ? tensor.data_ptr<T>() : nullptr;
}

inline OptionalTensor contiguous_or_none(const OptionalTensor& tensor) {
  if (!tensor.has_value() || !tensor->defined()) return std::nullopt;
  return tensor->contiguous();
}

struct Lengths {
  const std::int64_t* data = nullptr;
  bool valid(std::int64_t row, std::int64_t t) const { return data == nullptr || t < data[row]; }
};

inline Lengths read_lengths(const OptionalTensor& lengths) {
  Lengths result;
  if (lengths.has_value() && lengths->defined()) result.data = lengths->data_ptr<std::int64_t>();
  return result;
}

// Runs body(begin, end) on blocks of batch rows, one block per thread, each for the whole sequence.
// Rows of a batch never interact in the recurrence, so a thread can carry its rows through every
// step (its own GEMM on its rows, then their gate loop) with no synchronisation between steps:
// at small sizes a fork and join per step (for the GEMM, then again for the gates) costs as much
// as the step, and the threads spin-wait through each other's serial parts.
template <typename F>
void for_each_row_block(std::int64_t rows, const F& body) {
  at::parallel_for(0, rows, 1, [&](std::int64_t begin, std::int64_t end) {
    // the worker threads do not inherit the caller's no-grad mode, and a GEMM with an out= tensor
    // on a weight that requires grad would be refused
    const c10::NoGradGuard no_grad;
    body(begin, end);
  });
}

// out = in W^T, the per-step product with a weight W [N, K] (w_t is W.t()). One or two rows (the
// streaming case) take a dot product per weight row: a GEMM call's fixed cost would dominate.
template <typename T>
void matmul_weight_t(Tensor& out, const Tensor& in, const Tensor& w, const Tensor& w_t) {
  const std::int64_t rows = in.size(0);
  if (rows > 2) {
    at::mm_out(out, in, w_t);
    return;
  }
  const std::int64_t outputs = w.size(0), inner = w.size(1);
  const T* w_data = w.data_ptr<T>();
  const T* in_data = in.data_ptr<T>();
  T* out_data = out.data_ptr<T>();
  for (std::int64_t b = 0; b < rows; ++b) {
    const T* in_row = in_data + b * inner;
    for (std::int64_t n = 0; n < outputs; ++n) {
      const T* w_row = w_data + n * inner;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (std::int64_t k = 0; k < inner; ++k) sum += w_row[k] * in_row[k];
      out_data[b * outputs + n] = sum;
    }
  }
}

// A test matrix with varied entries, made without the random generator (drawing from it would move
// the caller's random stream on the kernels' first use).
inline Tensor probe_matrix(std::int64_t rows, std::int64_t columns, std::int64_t seed,
                           const at::TensorOptions& options = at::TensorOptions()) {
  return at::arange(rows * columns, options).mul(0.7).add(static_cast<double>(seed)).sin().reshape({rows, columns});
}

// ------------------------------------------------------------------------- packed weights
// The per-step product h_{t-1} W^T uses the same W at every step. MKL's packed GEMM
// (cblas_sgemm_pack / cblas_sgemm_compute, which torch's own MKL carries) lays W out for the GEMM
// once per sequence instead of at every call. Looked up at run time: a torch without MKL, or any
// result that differs from at::mm on a first check, leaves the plain at::mm path.
class PackedGemm {
 public:
  static const PackedGemm& get() {
    static const PackedGemm instance;
    return instance;
  }
  bool available() const { return available_; }

  // Packs B for C[m, n] = A[m, k] B[k, n] with B = W^T (transposed=true, W [n, k]) or B = W (W [k, n]).
  std::unique_ptr<float[]> pack(const float* w, std::int64_t m, std::int64_t n, std::int64_t k, bool transposed) const {
    // new float[] leaves the buffer uninitialised (pack_ writes all of it); a std::vector would zero
    // it first, a memset of the whole packed weight per sequence
    std::unique_ptr<float[]> packed(new float[get_size_(kBMatrix, m, n, k) / sizeof(float) + 1]);
    pack_(kRowMajor, kBMatrix, transposed ? kTrans : kNoTrans, m, n, k, 1.0f, w, transposed ? k : n, packed.get());
    return packed;
  }

  // C = A B (+ C when accumulate) with B packed by pack(); A [m, k] with row stride lda.
  void compute(const float* a, std::int64_t lda, const float* packed_b, float* c, std::int64_t m,
               std::int64_t n, std::int64_t k, bool accumulate) const {
    compute_(kRowMajor, kNoTrans, kPacked, m, n, k, a, lda, packed_b, n, accumulate ? 1.0f : 0.0f, c, n);
  }

 private:
  static constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;
  using GetSize = std::size_t (*)(int, int, int, int);
  using Pack = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
  using Compute = void (*)(int, int, int, int, int, int, const float*, int, const float*, int, float, float*, int);

  PackedGemm() {
    void* library = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (library == nullptr) return;
    get_size_ = reinterpret_cast<GetSize>(dlsym(library, "cblas_sgemm_pack_get_size"));
    pack_ = reinterpret_cast<Pack>(dlsym(library, "cblas_sgemm_pack"));
    compute_ = reinterpret_cast<Compute>(dlsym(library, "cblas_sgemm_compute"));
    if (get_size_ == nullptr || pack_ == nullptr || compute_ == nullptr) return;
    available_ = agrees_with_aten();
  }

  // The symbols' integer width (LP64 or ILP64) is not in their names: check a product once.
  bool agrees_with_aten() {
    available_ = true;
    Tensor a = probe_matrix(5, 7, 1), w = probe_matrix(9, 7, 2);
    Tensor expected = at::mm(a, w.t()), got = at::empty({5, 9});
    const std::unique_ptr<float[]> packed = pack(w.data_ptr<float>(), 5, 9, 7, true);
    compute(a.data_ptr<float>(), 7, packed.get(), got.data_ptr<float>(), 5, 9, 7, false);
    return at::allclose(got, expected, 1e-4, 1e-5);
  }

  bool available_ = false;
  GetSize get_size_ = nullptr;
  Pack pack_ = nullptr;
  Compute compute_ = nullptr;
};

// W (or W^T) ready for C = A·(W^T or W) at every step: MKL-packed for float32 when that is
// available, else at::mm_out on the tensor itself.
template <typename T>
class StepProduct {
 public:
  // transposed=true: C[m, n] = A W^T with W [n, k]; false: C[m, n] = A W with W [k, n].
  // steps: how many products will use this weight (packing pays off only when it is reused).
  StepProduct(const Tensor& w, std::int64_t m, bool transposed, std::int64_t steps)
      : w_(w), transposed_(transposed) {
    n_ = transposed ? w.size(0) : w.size(1);
    k_ = transposed ? w.size(1) : w.size(0);
    m_ = m;
    if constexpr (std::is_same_v<T, float>) {
      if (m > 2 && steps > 1 && PackedGemm::get().available())
        packed_ = PackedGemm::get().pack(w.data_ptr<float>(), m, n_, k_, transposed);
    }
  }

  // out [m, n] (contiguous) = a [m, k] (row stride a.stride(0), unit column stride) times the weight,
  // added to out when accumulate.
  void run(Tensor& out, const Tensor& a, bool accumulate = false) const {
    if constexpr (std::is_same_v<T, float>) {
      if (packed_ != nullptr && a.stride(1) == 1) {
        PackedGemm::get().compute(a.data_ptr<float>(), a.stride(0), packed_.get(), out.data_ptr<float>(), m_, n_, k_,
                                  accumulate);
        return;
      }
    }
    const Tensor weight = transposed_ ? w_.t() : w_;
    if (accumulate) {
      out.addmm_(a, weight);
    } else if (transposed_) {
      matmul_weight_t<T>(out, a, w_, weight);
    } else {
      at::mm_out(out, a, weight);
    }
  }

 private:
  Tensor w_;
  bool transposed_;
  std::int64_t m_ = 0, n_ = 0, k_ = 0;
  std::unique_ptr<float[]> packed_;
};

// h_{t-1} ⊙ m into `out`, or h_{t-1} itself when there is no mask.
template <typename T>
Tensor masked_input(const Tensor& h, const T* mask, Tensor& scratch) {
  if (mask == nullptr) return h;
  const T* h_data = h.data_ptr<T>();
  T* out = scratch.data_ptr<T>();
  const std::int64_t n = h.numel();
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) out[j] = h_data[j] * mask[j];
  return scratch;
}

// dh_next += dh_in ⊙ m (all rows: a row that did not run has dh_in = 0).
template <typename T>
void add_masked(Tensor& dh_next, const Tensor& dh_in, const T* mask) {
  T* out = dh_next.data_ptr<T>();
  const T* in = dh_in.data_ptr<T>();
  const std::int64_t n = dh_next.numel();
  if (mask == nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) out[j] += in[j];
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) out[j] += in[j] * mask[j];
  }
}

// The recurrent projections of every step, h_{t-1} ⊙ m for t = 0..T−1 ([T, B, H]): h_0 then the
// outputs (a step that ran for row b has every earlier step of row b run too, so output[t−1] is
// h_{t-1} wherever the gradient is non-zero).
inline Tensor recurrent_inputs(const Tensor& output, const Tensor& h0, const OptionalTensor& mask) {
  Tensor history = at::cat({h0.unsqueeze(0), output.narrow(0, 0, output.size(0) - 1)}, 0);
  if (mask.has_value() && mask->defined()) history.mul_(mask->unsqueeze(0));
  return history;
}

// dW_hh = Σ_t dpre_t^T (h_{t-1} ⊙ m): one GEMM over all steps (two without a mask: h_0, then the
// outputs read in place, rather than copying all T states into one history first).
inline Tensor recurrent_weight_gradient(const Tensor& d_recurrent, const Tensor& output, const Tensor& h0,
                                        const OptionalTensor& mask) {
  const std::int64_t steps = d_recurrent.size(0), batch = d_recurrent.size(1);
  const std::int64_t gates = d_recurrent.size(2), hidden = h0.size(1);
  if (mask.has_value() && mask->defined()) {
    const Tensor inputs = recurrent_inputs(output, h0, mask);
    return at::mm(d_recurrent.reshape({steps * batch, gates}).t(), inputs.reshape({steps * batch, hidden}));
  }
  Tensor grad = at::mm(d_recurrent[0].t(), h0);
  if (steps > 1)
    grad.addmm_(d_recurrent.narrow(0, 1, steps - 1).reshape({(steps - 1) * batch, gates}).t(),
                output.narrow(0, 0, steps - 1).reshape({(steps - 1) * batch, hidden}));
  return grad;
}

inline Tensor undefined() { return Tensor(); }

// What forward saves for backward. With variable lengths, rows that skip a step leave their entry
// unwritten; backward multiplies those entries by zero gradients, so they must not hold NaN bits.
inline Tensor saved_buffer(const OptionalTensor& lengths, at::IntArrayRef sizes, const at::TensorOptions& options) {
  return lengths.has_value() && lengths->defined() ? at::zeros(sizes, options) : at::empty(sizes, options);
}

inline Tensor or_undefined(const OptionalTensor& tensor) { return tensor.has_value() ? *tensor : Tensor(); }

// The gate loops read b_hh unconditionally (a branch per element would stop them vectorising).
inline OptionalTensor bias_or_zeros(const OptionalTensor& bias, const Tensor& w_hh) {
  if (bias.has_value() && bias->defined()) return bias->contiguous();
  return at::zeros({w_hh.size(0)}, w_hh.options());
}

// ----------------------------------------------------------------------- the loop, forward
// What a cell's forward pass sets up once per call (pointers taken here, not per row and step):
// the output [T, B, H], the carried state h (h_0 cloned), the buffer of h_{t-1} ⊙ m, the gates
// saved for backward [slots, B, saved_width] and the recurrent norm's x_hat [slots, B, gates] and
// rstd [slots, B] ([slots, B, 2] for Cho's GRU: two products a step, each normalised), with slots = T
// when saved for backward, else 1 (the current step's, overwritten). For the cells with one
// product per step (RNN, LSTM, GRU in torch's form) it also holds hh = (h_{t-1} ⊙ m) W_hh^T of the
// current step and runs the loop over time (block, run); Cho's GRU runs a loop of its own.
template <typename T>
struct ForwardLoop {
  ForwardLoop(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
              const OptionalTensor& ln_hh, const OptionalTensor& mask, const OptionalTensor& lengths, bool save,
              std::int64_t saved_width, std::int64_t products = 1)
      : steps(x_proj.size(0)), batch(x_proj.size(1)), hidden(h0.size(1)), gates(w_hh.size(0)),
        slots(save ? steps : 1), save(save), layer_norm(ln_hh.has_value()), options(x_proj.options()), w_hh(w_hh),
        bias(ptr_or_null<T>(b_hh)), gain(ptr_or_null<T>(ln_hh)), mask_data(ptr_or_null<T>(mask)),
        valid(read_lengths(lengths)) {
    output = at::empty({steps, batch, hidden}, options);
    h = h0.clone();
    if (products == 1) hh = at::empty({batch, gates}, options);
    if (mask.has_value()) masked = at::empty({batch, hidden}, options);  // h ⊙ m
    if (saved_width > 0) saved_gates = saved_buffer(lengths, {slots, batch, saved_width}, options);
    if (layer_norm) {
      hh_hat = saved_buffer(lengths, {slots, batch, gates}, options);
      hh_rstd = products == 1 ? saved_buffer(lengths, {slots, batch}, options)
                              : saved_buffer(lengths, {slots, batch, products}, options);
    }
    x_proj_data = data_or_null<T>(x_proj);
    output_data = data_or_null<T>(output);
    h_data = data_or_null<T>(h);
    hh_data = data_or_null<T>(hh);
    saved_gates_data = data_or_null<T>(saved_gates);
    hh_hat_data = data_or_null<T>(hh_hat);
    hh_rstd_data = data_or_null<T>(hh_rstd);
  }

  // Row b of hh, normalised in place with a recurrent norm: LN(h W_hh^T) γ, its x_hat and rstd saved in `slot`.
  T* recurrent_row(std::int64_t slot, std::int64_t b) const {
    T* hh_row = hh_data + b * gates;
    if (layer_norm) {
      T* hat = hh_hat_data + (slot * batch + b) * gates;
      hh_rstd_data[slot * batch + b] = normalise_affine_row<true, false>(hh_row, hat, gain, nullptr, hh_row, gates);
    }
    return hh_row;
  }

  // The rows [begin, end) through every step: hh = (h_{t-1} ⊙ m) W_hh^T of the rows, then
  // step(t, slot, b) on each row b that runs at step t (the cell's gate pass: it writes the output,
  // h and what it saves); a row past its length outputs zero and keeps its state.
  template <typename Step>
  void block(std::int64_t begin, std::int64_t end, const Step& step) const {
    const std::int64_t rows = end - begin;
    Tensor h_rows = h.narrow(0, begin, rows), hh_rows = hh.narrow(0, begin, rows);
    Tensor masked_rows = masked.defined() ? masked.narrow(0, begin, rows) : masked;
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent(w_hh, rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      recurrent.run(hh_rows, masked_input<T>(h_rows, mask_rows, masked_rows));
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) {
        if (valid.valid(b, t)) {
          step(t, slot, b);
          continue;
        }
        T* out_row = output_data + (t * batch + b) * hidden;
        for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
      }
    }
  }

  // block() on every row, a block of them per thread (for_each_row_block).
  template <typename Step>
  void run(const Step& step) const {
    for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) { block(begin, end, step); });
  }

  const std::int64_t steps, batch, hidden, gates, slots;
  const bool save, layer_norm;
  const at::TensorOptions options;
  const Tensor w_hh;
  Tensor output, h, hh, masked, saved_gates, hh_hat, hh_rstd;
  const T* const bias;  // b_hh, never absent (bias_or_zeros): the gate loops read it unconditionally
  const T* const gain;  // γ of the recurrent norm
  const T* const mask_data;
  const Lengths valid;
  T* x_proj_data = nullptr;
  T* output_data = nullptr;
  T* h_data = nullptr;
  T* hh_data = nullptr;
  T* saved_gates_data = nullptr;
  T* hh_hat_data = nullptr;
  T* hh_rstd_data = nullptr;
};

// ---------------------------------------------------------------------- the loop, backward
// What a cell's backward pass sets up once per call: dh_next, the gradient of the carried state
// (dh_T = grad_h_last, carried down to dh_0, the returned gradient of h_0), dh_in = d_raw_t W_hh
// (d_raw: the gradient of the raw product h_{t-1} W_hh^T), and the data of the saved tensors.
// For the cells with one product per step it also runs the loop over time (block, run) and puts
// together what the kernel returns (gradients); Cho's GRU runs a loop of its own.
template <typename T>
struct BackwardLoop {
  BackwardLoop(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj, const Tensor& h0,
               const Tensor& w_hh, const OptionalTensor& ln_hh, const OptionalTensor& mask,
               const OptionalTensor& lengths, const Tensor& output, const Tensor& hh_hat, const Tensor& hh_rstd)
      : steps(x_proj.size(0)), batch(x_proj.size(1)), hidden(h0.size(1)), gates(w_hh.size(0)),
        layer_norm(ln_hh.has_value()), options(x_proj.options()), w_hh(w_hh), hh_hat(hh_hat),
        dh_next(grad_h_last.clone()), dh_in(at::empty({batch, hidden}, options)), gain(ptr_or_null<T>(ln_hh)),
        mask_data(ptr_or_null<T>(mask)), h0_data(h0.data_ptr<T>()), valid(read_lengths(lengths)),
        grad_output_data(data_or_null<T>(grad_output)), output_data(data_or_null<T>(output)),
        dh_next_data(data_or_null<T>(dh_next)), hh_hat_data(data_or_null<T>(hh_hat)),
        hh_rstd_data(data_or_null<T>(hh_rstd)) {}

  // An uninitialised gradient of a [T, B, gates] tensor (x_proj's, the product's).
  Tensor new_gradient() const { return at::empty({steps, batch, gates}, options); }

  // h_{t-1} of row b: the output of step t − 1, or h_0.
  const T* h_prev(std::int64_t t, std::int64_t b) const {
    return t > 0 ? output_data + ((t - 1) * batch + b) * hidden : h0_data + b * hidden;
  }

  // The rows [begin, end) from step T−1 down to 0: step(t, b) on each row b that ran at step t (the
  // cell's gate pass: it writes row (t, b) of the gradients, d_raw's among them, and the direct part
  // of dh_{t-1} over dh_next[b]); a row that did not run gets zero gradients in `written` (the
  // [T, B, gates] gradients, nullptr for an absent one) and keeps its dh_next (the state passed
  // through). Then dh_next += (d_raw_t W_hh) ⊙ m for the rows (all of them: a row that did not run
  // has d_raw_t = 0).
  template <typename Step>
  void block(std::int64_t begin, std::int64_t end, const Tensor& d_raw, std::initializer_list<T*> written,
             const Step& step) const {
    const std::int64_t rows = end - begin;
    Tensor dh_in_rows = dh_in.narrow(0, begin, rows), dh_next_rows = dh_next.narrow(0, begin, rows);
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent_back(w_hh, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      for (std::int64_t b = begin; b < end; ++b) {
        if (valid.valid(b, t)) {
          step(t, b);
          continue;
        }
        for (T* gradient : written)
          if (gradient != nullptr) std::fill_n(gradient + (t * batch + b) * gates, gates, T(0));
      }
      recurrent_back.run(dh_in_rows, d_raw[t].narrow(0, begin, rows));
      add_masked<T>(dh_next_rows, dh_in_rows, mask_rows);
    }
  }

  // block() on every row, a block of them per thread (for_each_row_block).
  template <typename Step>
  void run(const Tensor& d_raw, std::initializer_list<T*> written, const Step& step) const {
    for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) { block(begin, end, d_raw, written, step); });
  }

  // What the backward kernels return: d_x, dh_0, dW_hh (grad_w), db_hh = Σ_{t,b} d_hh and
  // dγ = Σ_{t,b} d_hh ⊙ x_hat, where d_hh is the gradient of LN(h_{t-1} W_hh^T) γ + b_hh.
  std::vector<Tensor> gradients(const Tensor& d_x, const Tensor& grad_w, const Tensor& d_hh,
                                const OptionalTensor& b_hh) const {
    Tensor grad_b = b_hh.has_value() ? d_hh.sum({0, 1}) : undefined();
    Tensor grad_ln = layer_norm ? (d_hh * hh_hat).sum({0, 1}) : undefined();
    return {d_x, dh_next, grad_w, grad_b, grad_ln};
  }

  const std::int64_t steps, batch, hidden, gates;
  const bool layer_norm;
  const at::TensorOptions options;
  const Tensor w_hh, hh_hat;
  Tensor dh_next, dh_in;
  const T* const gain;  // γ of the recurrent norm
  const T* const mask_data;
  const T* const h0_data;
  const Lengths valid;
  T* const grad_output_data;
  T* const output_data;
  T* const dh_next_data;
  T* const hh_hat_data;
  T* const hh_rstd_data;
};

// ---------------------------------------------------------------------------- entry points
inline void check_inputs(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh) {
  TORCH_CHECK(x_proj.dim() == 3, "rnnlab kernel: x_proj must be [T, B, gates·H], got ", x_proj.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == x_proj.size(1), "rnnlab kernel: h0 must be [B, H], got ", h0.sizes());
  TORCH_CHECK(x_proj.device().is_cpu(), "rnnlab kernel: CPU tensors only");
  TORCH_CHECK(x_proj.scalar_type() == h0.scalar_type() && x_proj.scalar_type() == w_hh.scalar_type(),
              "rnnlab kernel: x_proj, h0 and w_hh must share a dtype");
}

// A forward kernel's inputs checked and made contiguous, b_hh zeros where absent (see ForwardLoop::bias).
inline void prepare_forward(Tensor& x_proj, Tensor& h0, Tensor& w_hh, OptionalTensor& b_hh, OptionalTensor& ln_hh,
                            OptionalTensor& mask, OptionalTensor& lengths) {
  check_inputs(x_proj, h0, w_hh);
  x_proj = x_proj.contiguous(), h0 = h0.contiguous(), w_hh = w_hh.contiguous();
  b_hh = bias_or_zeros(b_hh, w_hh), ln_hh = contiguous_or_none(ln_hh), mask = contiguous_or_none(mask);
  lengths = contiguous_or_none(lengths);
}

#define RNNLAB_DISPATCH(tensor, call)                                                          \
  [&] {                                                                                        \
    if ((tensor).scalar_type() == at::kFloat) {                                                \
      using scalar_t = float;                                                                  \
      return call;                                                                             \
    }                                                                                          \
    TORCH_CHECK((tensor).scalar_type() == at::kDouble, "rnnlab kernel: float32 or float64 only, got ", \
                (tensor).scalar_type());                                                       \
    using scalar_t = double;                                                                   \
    return call;                                                                               \
  }()

// The kernels of each family, defined in its file and bound in recurrent.cpp. The *_inference ones
// are the Stepper's (recurrent.cpp): forward on inputs made ready once (prepare_forward), with no
// mask or lengths and nothing saved for backward.
// rnn.cpp
std::vector<Tensor> rnn_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool relu, bool save);
std::vector<Tensor> rnn_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, Tensor h0, Tensor w_hh,
                                 OptionalTensor b_hh, OptionalTensor ln_hh, OptionalTensor mask, OptionalTensor lengths,
                                 bool relu, Tensor output, OptionalTensor hh_hat, OptionalTensor hh_rstd);
std::vector<Tensor> rnn_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                  const OptionalTensor& b_hh, const OptionalTensor& ln_hh, bool relu);

// lstm.cpp
std::vector<Tensor> lstm_forward(Tensor x_proj, Tensor h0, Tensor c0, Tensor w_hh, OptionalTensor b_hh,
                                 OptionalTensor ln_hh, OptionalTensor ln_cell_w, OptionalTensor ln_cell_b,
                                 OptionalTensor mask, OptionalTensor lengths, bool save, OptionalTensor ln_ih,
                                 OptionalTensor b_ih);
std::vector<Tensor> lstm_backward(Tensor grad_output, Tensor grad_h_last, Tensor grad_c_last, Tensor x_proj,
                                  Tensor h0, Tensor c0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                  OptionalTensor ln_cell_w, OptionalTensor ln_cell_b, OptionalTensor mask,
                                  OptionalTensor lengths, Tensor output, Tensor saved_gates, Tensor cells,
                                  OptionalTensor hh_hat, OptionalTensor hh_rstd,
                                  OptionalTensor c_mean, OptionalTensor c_rstd, OptionalTensor ln_ih, OptionalTensor b_ih,
                                  OptionalTensor x_mean, OptionalTensor x_rstd);
std::vector<Tensor> lstm_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                   const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                   const OptionalTensor& ln_cell_w, const OptionalTensor& ln_cell_b);

// gru.cpp
std::vector<Tensor> gru_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool cho, bool save);
std::vector<Tensor> gru_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, Tensor h0, Tensor w_hh,
                                 OptionalTensor b_hh, OptionalTensor ln_hh, OptionalTensor mask, OptionalTensor lengths,
                                 bool cho, Tensor output, Tensor saved_gates, OptionalTensor hh_hat_in,
                                 OptionalTensor hh_rstd_in);
std::vector<Tensor> gru_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                  const OptionalTensor& b_hh, const OptionalTensor& ln_hh, bool cho);

// min_rnn.cpp
std::vector<Tensor> min_rnn_forward(Tensor x_proj, OptionalTensor bias, Tensor h0, OptionalTensor lengths, bool lstm);
std::vector<Tensor> min_rnn_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, OptionalTensor bias,
                                     Tensor h0, Tensor output, OptionalTensor lengths, bool lstm);
std::vector<Tensor> min_rnn_layer_forward(Tensor x, Tensor weight, OptionalTensor bias, Tensor h0,
                                          OptionalTensor lengths, bool lstm, bool save);
std::vector<Tensor> min_rnn_layer_backward(Tensor grad_output, Tensor grad_h_last, Tensor x, Tensor weight, Tensor h0,
                                           Tensor output, Tensor saved, OptionalTensor lengths, bool lstm);

}  // namespace rnnlab
