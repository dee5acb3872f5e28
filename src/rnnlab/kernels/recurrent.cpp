// rnnlab's CPU kernels: the loop over time of the RNN, LSTM and GRU cells, forward and backward.
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

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <bit>
#include <dlfcn.h>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

namespace {

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

OptionalTensor contiguous_or_none(const OptionalTensor& tensor) {
  if (!tensor.has_value() || !tensor->defined()) return std::nullopt;
  return tensor->contiguous();
}

struct Lengths {
  const std::int64_t* data = nullptr;
  bool valid(std::int64_t row, std::int64_t t) const { return data == nullptr || t < data[row]; }
};

Lengths read_lengths(const OptionalTensor& lengths) {
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
Tensor probe_matrix(std::int64_t rows, std::int64_t columns, std::int64_t seed,
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
Tensor recurrent_inputs(const Tensor& output, const Tensor& h0, const OptionalTensor& mask) {
  Tensor history = at::cat({h0.unsqueeze(0), output.narrow(0, 0, output.size(0) - 1)}, 0);
  if (mask.has_value() && mask->defined()) history.mul_(mask->unsqueeze(0));
  return history;
}

// dW_hh = Σ_t dpre_t^T (h_{t-1} ⊙ m): one GEMM over all steps (two without a mask: h_0, then the
// outputs read in place, rather than copying all T states into one history first).
Tensor recurrent_weight_gradient(const Tensor& d_recurrent, const Tensor& output, const Tensor& h0,
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

Tensor undefined() { return Tensor(); }

// What forward saves for backward. With variable lengths, rows that skip a step leave their entry
// unwritten; backward multiplies those entries by zero gradients, so they must not hold NaN bits.
Tensor saved_buffer(const OptionalTensor& lengths, at::IntArrayRef sizes, const at::TensorOptions& options) {
  return lengths.has_value() && lengths->defined() ? at::zeros(sizes, options) : at::empty(sizes, options);
}

Tensor or_undefined(const OptionalTensor& tensor) { return tensor.has_value() ? *tensor : Tensor(); }

// The gate loops read b_hh unconditionally (a branch per element would stop them vectorising).
OptionalTensor bias_or_zeros(const OptionalTensor& bias, const Tensor& w_hh) {
  if (bias.has_value() && bias->defined()) return bias->contiguous();
  return at::zeros({w_hh.size(0)}, w_hh.options());
}

// ------------------------------------------------------------------------------------ RNN
// h_t = act(x_t + LN(h_{t-1} W^T) γ + b) (act = tanh or relu). Saved: the outputs (h_t) and, with
// layer norm, x_hat and rstd of each step.
template <typename T>
std::vector<Tensor> rnn_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                     const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                     const OptionalTensor& mask, const OptionalTensor& lengths, bool relu, bool save) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1);
  const auto options = x_proj.options();
  Tensor output = at::empty({steps, batch, hidden}, options);
  Tensor h = h0.clone();
  Tensor hh = at::empty({batch, hidden}, options);
  Tensor masked = mask.has_value() ? at::empty({batch, hidden}, options) : Tensor();  // h ⊙ m
  const bool layer_norm = ln_hh.has_value();
  Tensor hh_hat = layer_norm ? saved_buffer(lengths, {save ? steps : 1, batch, hidden}, options) : undefined();
  Tensor hh_rstd = layer_norm ? saved_buffer(lengths, {save ? steps : 1, batch}, options) : undefined();
  const T* bias = ptr_or_null<T>(b_hh);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const h_data = data_or_null<T>(h);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const output_data = data_or_null<T>(output);
  T* const hh_data = data_or_null<T>(hh);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor h_rows = h.narrow(0, begin, rows), hh_rows = hh.narrow(0, begin, rows);
    Tensor masked_rows = masked.defined() ? masked.narrow(0, begin, rows) : masked;
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent(w_hh, rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      recurrent.run(hh_rows, masked_input<T>(h_rows, mask_rows, masked_rows));
      const T* x_t = x_proj_data + t * batch * hidden;
      T* out_t = output_data + t * batch * hidden;
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* out_row = out_t + b * hidden;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
          return;
        }
        const T* x_row = x_t + b * hidden;
        T* hh_row = hh_data + b * hidden;
        T* h_row = h_data + b * hidden;
        if (layer_norm) {
          T* hat = hh_hat_data + (slot * batch + b) * hidden;
          hh_rstd_data[slot * batch + b] =
              normalise_affine_row<true, false>(hh_row, hat, gain, nullptr, hh_row, hidden);
        }
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T pre = x_row[j] + hh_row[j] + bias[j];
          const T h_t = relu ? (pre > T(0) ? pre : T(0)) : Math<T>::tanh(pre);
          out_row[j] = h_t;
          h_row[j] = h_t;
        }
      }();
    }
  });
  return {output, h, hh_hat, hh_rstd};
}

template <typename T>
std::vector<Tensor> rnn_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                      const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                      const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                      const OptionalTensor& lengths, bool relu, const Tensor& output,
                                      const Tensor& hh_hat, const Tensor& hh_rstd) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1);
  const auto options = x_proj.options();
  Tensor d_pre = at::empty({steps, batch, hidden}, options);  // = grad of x_proj, and of LN(...)γ + b
  const bool layer_norm = ln_hh.has_value();
  Tensor d_raw = layer_norm ? at::empty({steps, batch, hidden}, options) : d_pre;  // grad of h W^T
  Tensor dh_next = grad_h_last.clone();
  Tensor dh_in = at::empty({batch, hidden}, options);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* dh_data = dh_next.data_ptr<T>();
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const grad_output_data = data_or_null<T>(grad_output);
  T* const output_data = data_or_null<T>(output);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor dh_in_rows = dh_in.narrow(0, begin, rows), dh_next_rows = dh_next.narrow(0, begin, rows);
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent_back(w_hh, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      const std::int64_t offset = t * batch * hidden;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t row = offset + b * hidden;
        T* d_pre_row = d_pre_data + row;
        T* d_raw_row = d_raw_data + row;
        if (!valid.valid(b, t)) {  // the state passed through: its gradient stays in dh_next
          for (std::int64_t j = 0; j < hidden; ++j) d_pre_row[j] = d_raw_row[j] = 0;
          return;
        }
        const T* g_row = grad_output_data + row;
        const T* h_row = output_data + row;
        T* dh_row = dh_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T dh = g_row[j] + dh_row[j];
          d_pre_row[j] = relu ? (h_row[j] > T(0) ? dh : T(0)) : dh * (T(1) - h_row[j] * h_row[j]);
          dh_row[j] = 0;  // the vanilla cell has no direct path from h_t to h_{t-1}
        }
        if (layer_norm)
          normalise_row_backward(d_pre_row, gain, hh_hat_data + row, hh_rstd_data[t * batch + b],
                                 d_raw_row, hidden);
      }();
      recurrent_back.run(dh_in_rows, d_raw[t].narrow(0, begin, rows));
      add_masked<T>(dh_next_rows, dh_in_rows, mask_rows);
    }
  });
  Tensor grad_w = recurrent_weight_gradient(d_raw, output, h0, mask);
  Tensor grad_b = b_hh.has_value() ? d_pre.sum({0, 1}) : undefined();
  Tensor grad_ln = layer_norm ? (d_pre * hh_hat).sum({0, 1}) : undefined();
  return {d_pre, dh_next, grad_w, grad_b, grad_ln};
}

// ----------------------------------------------------------------------------------- LSTM
// pre = x_t + LN(h_{t-1} W^T) γ + b, gates [i f g o] (torch.nn's order);
// c_t = f c_{t-1} + i g, h_t = o tanh(LN(c_t) γ_c + β_c). Saved: activated gates [T, B, 4H], the
// cell states c_t and, with layer norm, x_hat and rstd of the recurrent norm
// and mean and rstd of the cell's and the input's (their x_hat is recomputed in backward).
template <typename T>
std::vector<Tensor> lstm_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                      const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                      const OptionalTensor& ln_cell_w, const OptionalTensor& ln_cell_b,
                                      const OptionalTensor& mask, const OptionalTensor& lengths, bool save,
                                      const OptionalTensor& ln_ih = std::nullopt,
                                      const OptionalTensor& b_ih = std::nullopt) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 4 * hidden;
  const std::int64_t slots = save ? steps : 1;
  const auto options = x_proj.options();
  Tensor output = at::empty({steps, batch, hidden}, options);
  Tensor h = h0.clone(), c = c0.clone();
  Tensor hh = at::empty({batch, gates}, options);
  Tensor masked = mask.has_value() ? at::empty({batch, hidden}, options) : Tensor();  // h ⊙ m
  Tensor saved_gates = saved_buffer(lengths, {slots, batch, gates}, options);
  Tensor cells = saved_buffer(lengths, {slots, batch, hidden}, options);
  const bool layer_norm = ln_hh.has_value();
  const bool cell_norm = ln_cell_w.has_value();
  Tensor hh_hat = layer_norm ? saved_buffer(lengths, {slots, batch, gates}, options) : undefined();
  Tensor hh_rstd = layer_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  // LN(c_t) and LN(W_ih x_t) are not saved but recomputed in backward from their mean and rstd: the
  // raw values are saved anyway (cells, x_proj), and the normalised ones would be 5H more per step
  // and row through memory (fresh pages cost as much as the arithmetic here).
  Tensor c_mean = cell_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  Tensor c_rstd = cell_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  // With input_norm, x_proj is the raw W_ih x_t: LN(W_ih x_t) γ_ih + b_ih happens here, per row while
  // it is in cache, instead of as three tensor operations over the whole sequence and their backward.
  const bool input_norm = ln_ih.has_value();
  Tensor x_mean = input_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  Tensor x_rstd = input_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  const T* bias = ptr_or_null<T>(b_hh);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* input_gain = ptr_or_null<T>(ln_ih);
  const T* input_bias = ptr_or_null<T>(b_ih);
  const T* cell_gain = ptr_or_null<T>(ln_cell_w);
  const T* cell_bias = ptr_or_null<T>(ln_cell_b);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const output_data = data_or_null<T>(output);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const hh_data = data_or_null<T>(hh);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  T* const x_mean_data = data_or_null<T>(x_mean);
  T* const x_rstd_data = data_or_null<T>(x_rstd);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const cells_data = data_or_null<T>(cells);
  T* const h_data = data_or_null<T>(h);
  T* const c_data = data_or_null<T>(c);
  T* const c_rstd_data = data_or_null<T>(c_rstd);
  T* const c_mean_data = data_or_null<T>(c_mean);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    std::vector<T> x_normalised(input_norm ? gates : 0);  // LN(W_ih x_t) γ_ih + b_ih of one row
    std::vector<T> tanh_scratch(hidden);  // LN(c_t) γ_c + β_c, then its tanh (recomputed in backward)
    Tensor h_rows = h.narrow(0, begin, rows), hh_rows = hh.narrow(0, begin, rows);
    Tensor masked_rows = masked.defined() ? masked.narrow(0, begin, rows) : masked;
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent(w_hh, rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      recurrent.run(hh_rows, masked_input<T>(h_rows, mask_rows, masked_rows));
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* out_row = output_data + (t * batch + b) * hidden;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
          return;
        }
        const T* x_row = x_proj_data + (t * batch + b) * gates;
        T* hh_row = hh_data + b * gates;
        if (layer_norm) {
          T* hat = hh_hat_data + (slot * batch + b) * gates;
          hh_rstd_data[slot * batch + b] =
              normalise_affine_row<true, false>(hh_row, hat, gain, nullptr, hh_row, gates);
        }
        if (input_norm) {
          T* normalised = x_normalised.data();
          T* mean = x_mean_data + slot * batch + b;
          x_rstd_data[slot * batch + b] =
              input_bias == nullptr
                  ? normalise_affine_row<false, false>(x_row, nullptr, input_gain, nullptr, normalised, gates, mean)
                  : normalise_affine_row<false, true>(x_row, nullptr, input_gain, input_bias, normalised, gates, mean);
          x_row = normalised;
        }
        T* gate_row = saved_gates_data + (slot * batch + b) * gates;
        T* cell_row = cells_data + (slot * batch + b) * hidden;
        T* tanh_row = tanh_scratch.data();
        T* h_row = h_data + b * hidden;
        T* c_row = c_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T i_t = Math<T>::sigmoid(x_row[j] + hh_row[j] + bias[j]);
          const T f_t = Math<T>::sigmoid(x_row[hidden + j] + hh_row[hidden + j] + bias[hidden + j]);
          const T c_tilde =
              Math<T>::tanh(x_row[2 * hidden + j] + hh_row[2 * hidden + j] + bias[2 * hidden + j]);
          const T o_t =
              Math<T>::sigmoid(x_row[3 * hidden + j] + hh_row[3 * hidden + j] + bias[3 * hidden + j]);
          gate_row[j] = i_t;
          gate_row[hidden + j] = f_t;
          gate_row[2 * hidden + j] = c_tilde;
          gate_row[3 * hidden + j] = o_t;
          const T c_t = f_t * c_row[j] + i_t * c_tilde;
          cell_row[j] = c_t;
          c_row[j] = c_t;
        }
        const T* shown = cell_row;  // what tanh sees: c_t, or LN(c_t) γ_c + β_c
        if (cell_norm) {
          c_rstd_data[slot * batch + b] = normalise_affine_row<false, true>(
              cell_row, nullptr, cell_gain, cell_bias, tanh_row, hidden, c_mean_data + slot * batch + b);
          shown = tanh_row;
        }
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T tanh_c = Math<T>::tanh(shown[j]);
          tanh_row[j] = tanh_c;
          const T h_t = gate_row[3 * hidden + j] * tanh_c;
          out_row[j] = h_t;
          h_row[j] = h_t;
        }
      }();
    }
  });
  return {output, h, c, saved_gates, cells, hh_hat, hh_rstd, c_mean, c_rstd, x_mean, x_rstd};
}

template <typename T>
std::vector<Tensor> lstm_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& grad_c_last,
                                       const Tensor& x_proj, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                       const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                       const OptionalTensor& ln_cell_w, const OptionalTensor& ln_cell_b,
                                       const OptionalTensor& mask, const OptionalTensor& lengths, const Tensor& output,
                                       const Tensor& saved_gates, const Tensor& cells,
                                       const Tensor& hh_hat, const Tensor& hh_rstd, const Tensor& c_mean,
                                       const Tensor& c_rstd, const OptionalTensor& ln_ih, const OptionalTensor& b_ih,
                                       const Tensor& x_mean, const Tensor& x_rstd) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 4 * hidden;
  const auto options = x_proj.options();
  const bool layer_norm = ln_hh.has_value();
  const bool cell_norm = ln_cell_w.has_value();
  const bool input_norm = ln_ih.has_value();
  // d_pre, the gradient of the pre-activation, is a returned tensor (d_x or d_raw) unless both
  // norms stand between; then it lives one row at a time and Σ d_pre (the biases' gradient) is
  // added up per thread as it goes, instead of a sequence-long tensor summed at the end.
  const bool d_pre_whole = !layer_norm || !input_norm;
  const bool bias_sums = !d_pre_whole && (b_hh.has_value() || b_ih.has_value());
  Tensor d_pre = d_pre_whole ? at::empty({steps, batch, gates}, options) : undefined();
  Tensor d_x = input_norm ? at::empty({steps, batch, gates}, options) : d_pre;  // grad of the raw W_ih x
  Tensor d_raw = layer_norm ? at::empty({steps, batch, gates}, options) : d_pre;
  Tensor dh_next = grad_h_last.clone(), dc_next = grad_c_last.clone();
  Tensor dh_in = at::empty({batch, hidden}, options);
  Tensor d_shown = at::empty({batch, hidden}, options), d_shown_in = at::empty({batch, hidden}, options);
  // γ, γ_c, β_c gradients: sums over all steps and rows, added up while each row's values are still
  // in cache (one double accumulator per thread), not as products over the saved sequence at the end.
  const std::int64_t threads = at::get_num_threads();
  std::vector<double> sum_gain(layer_norm ? threads * gates : 0), sum_input_gain(input_norm ? threads * gates : 0);
  std::vector<double> sum_cell_w(cell_norm ? threads * hidden : 0), sum_cell_b(cell_norm ? threads * hidden : 0);
  std::vector<double> sum_bias(bias_sums ? threads * gates : 0);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* cell_gain = ptr_or_null<T>(ln_cell_w);
  const T* cell_bias = ptr_or_null<T>(ln_cell_b);
  const T* input_gain = ptr_or_null<T>(ln_ih);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const d_x_data = data_or_null<T>(d_x);
  T* const grad_output_data = data_or_null<T>(grad_output);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const cells_data = data_or_null<T>(cells);
  T* const c_mean_data = data_or_null<T>(c_mean);
  T* const c_rstd_data = data_or_null<T>(c_rstd);
  T* const dh_next_data = data_or_null<T>(dh_next);
  T* const dc_next_data = data_or_null<T>(dc_next);
  T* const d_shown_data = data_or_null<T>(d_shown);
  T* const d_shown_in_data = data_or_null<T>(d_shown_in);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const x_mean_data = data_or_null<T>(x_mean);
  T* const x_rstd_data = data_or_null<T>(x_rstd);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    std::vector<T> x_hat_row(input_norm ? gates : 0), c_hat_row(cell_norm ? hidden : 0);  // recomputed LN(·) of one row
    std::vector<T> d_pre_scratch(d_pre_whole ? 0 : gates), tanh_scratch(hidden);
    Tensor dh_in_rows = dh_in.narrow(0, begin, rows), dh_next_rows = dh_next.narrow(0, begin, rows);
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent_back(w_hh, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
        T* d_pre_row = d_pre_whole ? d_pre_data + gate_offset : d_pre_scratch.data();
        T* d_raw_row = d_raw_data + gate_offset;
        T* d_x_row = d_x_data + gate_offset;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < gates; ++j) d_pre_row[j] = d_raw_row[j] = d_x_row[j] = 0;
          return;
        }
        const T* g_row = grad_output_data + state_offset;
        const T* gate_row = saved_gates_data + gate_offset;
        // tanh of what the forward step showed it, LN(c_t) γ_c + β_c or c_t: recomputed, one tanh per
        // element, rather than saved (H more per step and row through memory)
        T* tanh_row = tanh_scratch.data();
        if (cell_norm) {
          T* hat = c_hat_row.data();
          centre_row(cells_data + state_offset, c_mean_data[t * batch + b],
                     c_rstd_data[t * batch + b], hat, hidden);
#pragma omp simd
          for (std::int64_t j = 0; j < hidden; ++j) tanh_row[j] = Math<T>::tanh(hat[j] * cell_gain[j] + cell_bias[j]);
        } else {
          const T* cell_row = cells_data + state_offset;
#pragma omp simd
          for (std::int64_t j = 0; j < hidden; ++j) tanh_row[j] = Math<T>::tanh(cell_row[j]);
        }
        const T* c_prev = t > 0 ? cells_data + state_offset - batch * hidden : c0.data_ptr<T>() + b * hidden;
        T* dh_row = dh_next_data + b * hidden;
        T* dc_row = dc_next_data + b * hidden;
        T* ds = d_shown_data + b * hidden;
        const std::int64_t thread = at::get_thread_num();
        // dh → d(tanh shown) → d(shown); d o_t stored in d_pre's o block for now.
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T dh = g_row[j] + dh_row[j];
          const T tanh_c = tanh_row[j];
          const T o_t = gate_row[3 * hidden + j];
          d_pre_row[3 * hidden + j] = dh * tanh_c * o_t * (T(1) - o_t);
          ds[j] = dh * o_t * (T(1) - tanh_c * tanh_c);
          dh_row[j] = 0;  // refilled below by the GEMM: the LSTM's h_{t-1} acts only through W_hh
        }
        if (cell_norm) {
          const T* hat = c_hat_row.data();  // recomputed above
          T* ds_in = d_shown_in_data + b * hidden;
          normalise_row_backward<true, true>(ds, cell_gain, hat, c_rstd_data[t * batch + b], ds_in, hidden,
                                             sum_cell_w.data() + thread * hidden, sum_cell_b.data() + thread * hidden);
          ds = ds_in;
        }
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T i_t = gate_row[j], f_t = gate_row[hidden + j], c_tilde = gate_row[2 * hidden + j];
          const T dc = dc_row[j] + ds[j];
          d_pre_row[j] = dc * c_tilde * i_t * (T(1) - i_t);
          d_pre_row[hidden + j] = dc * c_prev[j] * f_t * (T(1) - f_t);
          d_pre_row[2 * hidden + j] = dc * i_t * (T(1) - c_tilde * c_tilde);
          dc_row[j] = dc * f_t;
        }
        if (layer_norm) {  // Σ d_pre, the biases' gradient, added in the same pass when d_pre is not kept
          const T* hat = hh_hat_data + gate_offset;
          const T rstd = hh_rstd_data[t * batch + b];
          double* gain_sum = sum_gain.data() + thread * gates;
          if (bias_sums) {
            normalise_row_backward<true, true>(d_pre_row, gain, hat, rstd, d_raw_row, gates, gain_sum,
                                               sum_bias.data() + thread * gates);
          } else {
            normalise_row_backward<true, false>(d_pre_row, gain, hat, rstd, d_raw_row, gates, gain_sum);
          }
        }
        if (input_norm) {
          T* hat = x_hat_row.data();
          centre_row(x_proj_data + gate_offset, x_mean_data[t * batch + b],
                     x_rstd_data[t * batch + b], hat, gates);
          normalise_row_backward<true, false>(d_pre_row, input_gain, hat, x_rstd_data[t * batch + b], d_x_row,
                                              gates, sum_input_gain.data() + thread * gates);
        }
      }();
      recurrent_back.run(dh_in_rows, d_raw[t].narrow(0, begin, rows));
      add_masked<T>(dh_next_rows, dh_in_rows, mask_rows);
    }
  });
  Tensor grad_w = recurrent_weight_gradient(d_raw, output, h0, mask);
  const auto thread_total = [&](std::vector<double>& sums, std::int64_t size) {
    return at::from_blob(sums.data(), {threads, size}, options.dtype(at::kDouble)).sum(0).to(options.dtype());
  };
  const Tensor bias_total = bias_sums ? thread_total(sum_bias, gates) : undefined();
  Tensor grad_b = b_hh.has_value() ? (bias_sums ? bias_total : d_pre.sum({0, 1})) : undefined();
  Tensor grad_ln = layer_norm ? thread_total(sum_gain, gates) : undefined();
  Tensor grad_cw = cell_norm ? thread_total(sum_cell_w, hidden) : undefined();
  Tensor grad_cb = cell_norm ? thread_total(sum_cell_b, hidden) : undefined();
  Tensor grad_input_ln = input_norm ? thread_total(sum_input_gain, gates) : undefined();
  // b_ih and b_hh add to the same pre-activation: the same gradient
  Tensor grad_input_b =
      b_ih.has_value() ? (grad_b.defined() ? grad_b.clone() : (bias_sums ? bias_total : d_pre.sum({0, 1}))) : undefined();
  return {d_x, dh_next, dc_next, grad_w, grad_b, grad_ln, grad_cw, grad_cb, grad_input_ln, grad_input_b};
}

// ------------------------------------------------------------------------ GRU, torch's form
// hh = LN(h_{t-1} W^T) γ + b = [hh_r hh_z hh_n];  r = σ(x_r + hh_r), z = σ(x_z + hh_z),
// n = tanh(x_n + r hh_n), h_t = (1 − z) n + z h_{t-1}. Saved: [r z n hh_n] per step (+ LN).
template <typename T>
std::vector<Tensor> gru_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                     const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                     const OptionalTensor& mask, const OptionalTensor& lengths, bool save) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 3 * hidden;
  const std::int64_t slots = save ? steps : 1;
  const auto options = x_proj.options();
  Tensor output = at::empty({steps, batch, hidden}, options);
  Tensor h = h0.clone();
  Tensor hh = at::empty({batch, gates}, options);
  Tensor masked = mask.has_value() ? at::empty({batch, hidden}, options) : Tensor();  // h ⊙ m
  Tensor saved_gates = saved_buffer(lengths, {slots, batch, 4 * hidden}, options);
  const bool layer_norm = ln_hh.has_value();
  Tensor hh_hat = layer_norm ? saved_buffer(lengths, {slots, batch, gates}, options) : undefined();
  Tensor hh_rstd = layer_norm ? saved_buffer(lengths, {slots, batch}, options) : undefined();
  const T* bias = ptr_or_null<T>(b_hh);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const output_data = data_or_null<T>(output);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const hh_data = data_or_null<T>(hh);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const h_data = data_or_null<T>(h);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor h_rows = h.narrow(0, begin, rows), hh_rows = hh.narrow(0, begin, rows);
    Tensor masked_rows = masked.defined() ? masked.narrow(0, begin, rows) : masked;
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent(w_hh, rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      recurrent.run(hh_rows, masked_input<T>(h_rows, mask_rows, masked_rows));
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* out_row = output_data + (t * batch + b) * hidden;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
          return;
        }
        const T* x_row = x_proj_data + (t * batch + b) * gates;
        T* hh_row = hh_data + b * gates;
        if (layer_norm) {
          T* hat = hh_hat_data + (slot * batch + b) * gates;
          hh_rstd_data[slot * batch + b] =
              normalise_affine_row<true, false>(hh_row, hat, gain, nullptr, hh_row, gates);
        }
        T* gate_row = saved_gates_data + (slot * batch + b) * 4 * hidden;
        T* h_row = h_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T r_t = Math<T>::sigmoid(x_row[j] + hh_row[j] + bias[j]);
          const T z_t = Math<T>::sigmoid(x_row[hidden + j] + hh_row[hidden + j] + bias[hidden + j]);
          const T hh_n = hh_row[2 * hidden + j] + bias[2 * hidden + j];
          const T n_t = Math<T>::tanh(x_row[2 * hidden + j] + r_t * hh_n);
          const T h_t = (T(1) - z_t) * n_t + z_t * h_row[j];
          gate_row[j] = r_t;
          gate_row[hidden + j] = z_t;
          gate_row[2 * hidden + j] = n_t;
          gate_row[3 * hidden + j] = hh_n;
          out_row[j] = h_t;
          h_row[j] = h_t;
        }
      }();
    }
  });
  return {output, h, saved_gates, hh_hat, hh_rstd};
}

template <typename T>
std::vector<Tensor> gru_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                      const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                      const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                      const OptionalTensor& lengths, const Tensor& output, const Tensor& saved_gates,
                                      const Tensor& hh_hat, const Tensor& hh_rstd) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 3 * hidden;
  const auto options = x_proj.options();
  const bool layer_norm = ln_hh.has_value();
  Tensor d_x = at::empty({steps, batch, gates}, options);   // grad of x_proj
  Tensor d_hh = at::empty({steps, batch, gates}, options);  // grad of LN(h W^T) γ + b (differs in the n block)
  Tensor d_raw = layer_norm ? at::empty({steps, batch, gates}, options) : d_hh;
  Tensor dh_next = grad_h_last.clone();
  Tensor dh_in = at::empty({batch, hidden}, options);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const d_x_data = data_or_null<T>(d_x);
  T* const d_hh_data = data_or_null<T>(d_hh);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const grad_output_data = data_or_null<T>(grad_output);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const output_data = data_or_null<T>(output);
  T* const dh_next_data = data_or_null<T>(dh_next);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor dh_in_rows = dh_in.narrow(0, begin, rows), dh_next_rows = dh_next.narrow(0, begin, rows);
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> recurrent_back(w_hh, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
        T* d_x_row = d_x_data + gate_offset;
        T* d_hh_row = d_hh_data + gate_offset;
        T* d_raw_row = d_raw_data + gate_offset;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < gates; ++j) d_x_row[j] = d_hh_row[j] = d_raw_row[j] = 0;
          return;
        }
        const T* g_row = grad_output_data + state_offset;
        const T* gate_row = saved_gates_data + (t * batch + b) * 4 * hidden;
        const T* h_prev = t > 0 ? output_data + state_offset - batch * hidden : h0.data_ptr<T>() + b * hidden;
        T* dh_row = dh_next_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T r_t = gate_row[j], z_t = gate_row[hidden + j], n_t = gate_row[2 * hidden + j];
          const T hh_n = gate_row[3 * hidden + j];
          const T dh = g_row[j] + dh_row[j];
          const T d_n_pre = dh * (T(1) - z_t) * (T(1) - n_t * n_t);
          const T d_r_pre = d_n_pre * hh_n * r_t * (T(1) - r_t);
          const T d_z_pre = dh * (h_prev[j] - n_t) * z_t * (T(1) - z_t);
          d_x_row[j] = d_hh_row[j] = d_r_pre;
          d_x_row[hidden + j] = d_hh_row[hidden + j] = d_z_pre;
          d_x_row[2 * hidden + j] = d_n_pre;
          d_hh_row[2 * hidden + j] = d_n_pre * r_t;
          dh_row[j] = dh * z_t;  // the direct path h_t ← z_t h_{t-1}; the GEMM adds the rest
        }
        if (layer_norm)
          normalise_row_backward(d_hh_row, gain, hh_hat_data + gate_offset, hh_rstd_data[t * batch + b],
                                 d_raw_row, gates);
      }();
      recurrent_back.run(dh_in_rows, d_raw[t].narrow(0, begin, rows));
      add_masked<T>(dh_next_rows, dh_in_rows, mask_rows);
    }
  });
  Tensor grad_w = recurrent_weight_gradient(d_raw, output, h0, mask);
  Tensor grad_b = b_hh.has_value() ? d_hh.sum({0, 1}) : undefined();
  Tensor grad_ln = layer_norm ? (d_hh * hh_hat).sum({0, 1}) : undefined();
  return {d_x, dh_next, grad_w, grad_b, grad_ln};
}

// -------------------------------------------------------------------------- GRU, Cho's form
// [hh_r hh_z] = LN(h_in W_rz^T) γ_rz + b_rz;  r = σ(x_r + hh_r), z = σ(x_z + hh_z);
// h~ = tanh(x_n + LN((r ⊙ h_in) W_n^T) γ_n + b_n);  h_t = (1 − z) h_{t-1} + z h~ (h_in = h_{t-1} ⊙ m).
// Two GEMMs per step, the second on r ⊙ h_in. Saved: [r z h~] per step (+ x_hat of both norms,
// rstd [T, B, 2]).
template <typename T>
std::vector<Tensor> gru_cho_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                         const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                         const OptionalTensor& mask, const OptionalTensor& lengths, bool save) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 3 * hidden;
  const std::int64_t slots = save ? steps : 1;
  const auto options = x_proj.options();
  Tensor output = at::empty({steps, batch, hidden}, options);
  Tensor h = h0.clone();
  Tensor hh_rz = at::empty({batch, 2 * hidden}, options);
  Tensor hh_n = at::empty({batch, hidden}, options);
  Tensor masked = mask.has_value() ? at::empty({batch, hidden}, options) : Tensor();  // h ⊙ m
  Tensor reset_input = at::empty({batch, hidden}, options);  // r ⊙ h_in
  Tensor saved_gates = saved_buffer(lengths, {slots, batch, gates}, options);
  const bool layer_norm = ln_hh.has_value();
  Tensor hh_hat = layer_norm ? saved_buffer(lengths, {slots, batch, gates}, options) : undefined();
  Tensor hh_rstd = layer_norm ? saved_buffer(lengths, {slots, batch, 2}, options) : undefined();
  const T* bias = ptr_or_null<T>(b_hh);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  T* const reset_input_data = data_or_null<T>(reset_input);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const hh_rz_data = data_or_null<T>(hh_rz);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const output_data = data_or_null<T>(output);
  T* const hh_n_data = data_or_null<T>(hh_n);
  T* const h_data = data_or_null<T>(h);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor h_rows = h.narrow(0, begin, rows), hh_rz_rows = hh_rz.narrow(0, begin, rows);
    Tensor hh_n_rows = hh_n.narrow(0, begin, rows), reset_rows = reset_input.narrow(0, begin, rows);
    Tensor masked_rows = masked.defined() ? masked.narrow(0, begin, rows) : masked;
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    const StepProduct<T> product_rz(w_hh.narrow(0, 0, 2 * hidden), rows, true, steps);
    const StepProduct<T> product_n(w_hh.narrow(0, 2 * hidden, hidden), rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      const Tensor h_in = masked_input<T>(h_rows, mask_rows, masked_rows);
      const T* h_in_data = h_in.data_ptr<T>() - begin * hidden;  // indexed by the global row b
      product_rz.run(hh_rz_rows, h_in);
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* reset_row = reset_input_data + b * hidden;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) reset_row[j] = 0;
          return;
        }
        const T* x_row = x_proj_data + (t * batch + b) * gates;
        T* rz_row = hh_rz_data + b * 2 * hidden;
        if (layer_norm) {
          T* hat = hh_hat_data + (slot * batch + b) * gates;
          hh_rstd_data[(slot * batch + b) * 2] =
              normalise_affine_row<true, false>(rz_row, hat, gain, nullptr, rz_row, 2 * hidden);
        }
        T* gate_row = saved_gates_data + (slot * batch + b) * gates;
        const T* h_in_row = h_in_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T r_t = Math<T>::sigmoid(x_row[j] + rz_row[j] + bias[j]);
          const T z_t = Math<T>::sigmoid(x_row[hidden + j] + rz_row[hidden + j] + bias[hidden + j]);
          gate_row[j] = r_t;
          gate_row[hidden + j] = z_t;
          reset_row[j] = r_t * h_in_row[j];
        }
      }();
      product_n.run(hh_n_rows, reset_rows);
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* out_row = output_data + (t * batch + b) * hidden;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
          return;
        }
        const T* x_row = x_proj_data + (t * batch + b) * gates;
        T* n_row = hh_n_data + b * hidden;
        if (layer_norm) {
          T* hat = hh_hat_data + (slot * batch + b) * gates + 2 * hidden;
          hh_rstd_data[(slot * batch + b) * 2 + 1] =
              normalise_affine_row<true, false>(n_row, hat, gain + 2 * hidden, nullptr, n_row, hidden);
        }
        T* gate_row = saved_gates_data + (slot * batch + b) * gates;
        T* h_row = h_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T h_tilde = Math<T>::tanh(x_row[2 * hidden + j] + n_row[j] + bias[2 * hidden + j]);
          const T z_t = gate_row[hidden + j];
          const T h_t = (T(1) - z_t) * h_row[j] + z_t * h_tilde;
          gate_row[2 * hidden + j] = h_tilde;
          out_row[j] = h_t;
          h_row[j] = h_t;
        }
      }();
    }
  });
  return {output, h, saved_gates, hh_hat, hh_rstd};
}

template <typename T>
std::vector<Tensor> gru_cho_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                          const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                          const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                          const OptionalTensor& lengths, const Tensor& output,
                                          const Tensor& saved_gates, const Tensor& hh_hat, const Tensor& hh_rstd) {
  const std::int64_t steps = x_proj.size(0), batch = x_proj.size(1), hidden = h0.size(1), gates = 3 * hidden;
  const auto options = x_proj.options();
  const bool layer_norm = ln_hh.has_value();
  Tensor d_pre = at::empty({steps, batch, gates}, options);  // grad of x_proj = grad of LN(...)γ + b
  Tensor d_raw = layer_norm ? at::empty({steps, batch, gates}, options) : d_pre;
  Tensor dh_next = grad_h_last.clone();
  Tensor d_reset_input = at::empty({batch, hidden}, options);
  Tensor dh_in = at::empty({batch, hidden}, options);
  const T* gain = ptr_or_null<T>(ln_hh);
  const T* mask_data = ptr_or_null<T>(mask);
  const Lengths valid = read_lengths(lengths);
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * hidden);
  const Tensor w_n = w_hh.narrow(0, 2 * hidden, hidden);
  Tensor inputs = recurrent_inputs(output, h0, mask);  // h_in of every step
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const grad_output_data = data_or_null<T>(grad_output);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const output_data = data_or_null<T>(output);
  T* const dh_next_data = data_or_null<T>(dh_next);
  T* const hh_hat_data = data_or_null<T>(hh_hat);
  T* const hh_rstd_data = data_or_null<T>(hh_rstd);
  T* const inputs_data = data_or_null<T>(inputs);
  T* const d_reset_input_data = data_or_null<T>(d_reset_input);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor dh_in_rows = dh_in.narrow(0, begin, rows), dh_next_rows = dh_next.narrow(0, begin, rows);
    const T* mask_rows = mask_data == nullptr ? nullptr : mask_data + begin * hidden;
    Tensor d_reset_rows = d_reset_input.narrow(0, begin, rows);
    const StepProduct<T> back_rz(w_rz, rows, false, steps), back_n(w_n, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
        T* d_pre_row = d_pre_data + gate_offset;
        T* d_raw_row = d_raw_data + gate_offset;
        if (!valid.valid(b, t)) {
          for (std::int64_t j = 0; j < gates; ++j) d_pre_row[j] = d_raw_row[j] = 0;
          return;
        }
        const T* g_row = grad_output_data + state_offset;
        const T* gate_row = saved_gates_data + gate_offset;
        const T* h_prev = t > 0 ? output_data + state_offset - batch * hidden : h0.data_ptr<T>() + b * hidden;
        T* dh_row = dh_next_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T z_t = gate_row[hidden + j], h_tilde = gate_row[2 * hidden + j];
          const T dh = g_row[j] + dh_row[j];
          d_pre_row[hidden + j] = dh * (h_tilde - h_prev[j]) * z_t * (T(1) - z_t);
          d_pre_row[2 * hidden + j] = dh * z_t * (T(1) - h_tilde * h_tilde);
          dh_row[j] = dh * (T(1) - z_t);  // the direct path h_t ← (1 − z_t) h_{t-1}
        }
        if (layer_norm)
          normalise_row_backward(d_pre_row + 2 * hidden, gain + 2 * hidden, hh_hat_data + gate_offset + 2 * hidden,
                                 hh_rstd_data[(t * batch + b) * 2 + 1], d_raw_row + 2 * hidden, hidden);
      }();
      // d(r ⊙ h_in) = d(hh_n raw) W_n
      back_n.run(d_reset_rows, d_raw[t].narrow(0, begin, rows).narrow(1, 2 * hidden, hidden));
      const T* h_in_t = inputs_data + t * batch * hidden;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates;
        T* d_reset_row = d_reset_input_data + b * hidden;
        if (!valid.valid(b, t)) return;  // rows of d_raw are zero there, so d(r ⊙ h_in) is too
        T* d_pre_row = d_pre_data + gate_offset;
        const T* gate_row = saved_gates_data + gate_offset;
        const T* h_in_row = h_in_t + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T r_t = gate_row[j];
          d_pre_row[j] = d_reset_row[j] * h_in_row[j] * r_t * (T(1) - r_t);
          d_reset_row[j] = d_reset_row[j] * r_t;  // now the part of dh_in through r ⊙ h_in
        }
        if (layer_norm)
          normalise_row_backward(d_pre_row, gain, hh_hat_data + gate_offset,
                                 hh_rstd_data[(t * batch + b) * 2], d_raw_data + gate_offset, 2 * hidden);
      }();
      dh_in_rows.copy_(d_reset_rows);
      back_rz.run(dh_in_rows, d_raw[t].narrow(0, begin, rows).narrow(1, 0, 2 * hidden), true);
      add_masked<T>(dh_next_rows, dh_in_rows, mask_rows);
    }
  });
  const std::int64_t rows = steps * batch;
  Tensor flat_raw = d_raw.reshape({rows, gates});
  Tensor flat_inputs = inputs.reshape({rows, hidden});
  Tensor reset_inputs = (saved_gates.narrow(2, 0, hidden) * inputs).reshape({rows, hidden});
  Tensor grad_w = at::cat({at::mm(flat_raw.narrow(1, 0, 2 * hidden).t(), flat_inputs),
                           at::mm(flat_raw.narrow(1, 2 * hidden, hidden).t(), reset_inputs)},
                          0);
  Tensor grad_b = b_hh.has_value() ? d_pre.sum({0, 1}) : undefined();
  Tensor grad_ln = layer_norm ? (d_pre * hh_hat).sum({0, 1}) : undefined();
  return {d_pre, dh_next, grad_w, grad_b, grad_ln};
}

// ------------------------------------------------------------------------ minGRU, minLSTM
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
template <typename T>
struct MinMath {
  static constexpr T kExpLimit = std::is_same_v<T, float> ? T(40) : T(300);
  static constexpr T kRatioLimit = std::is_same_v<T, float> ? T(87) : T(700);
  // e^{-x} with x clamped to ±Limit
  template <T Limit = kExpLimit>
  static inline T exp_minus(T x) {
    x = x < -Limit ? -Limit : (x > Limit ? Limit : x);
    if constexpr (std::is_same_v<T, float>) {
      return exp_float(-x);
    } else {
      return std::exp(-x);
    }
  }
};

// One step of one row: h_t from k = W x_t (without b; c is b) and h_{t-1} in h_row (updated in place).
// minGRU: z = 1/p_z, σ(k_h) = 1/p_h (used where k_h < 0), h_t = h_{t-1} + z (g(k_h) − h_{t-1}).
// minLSTM: f = 1/p_f, i = 1/p_i, so f' = p_i/(p_f + p_i), i' = p_f/(p_f + p_i), and
// h_t = (p_i h_{t-1} + p_f g(k_h)) / (p_f + p_i).
// With Save, also what the backward step needs, so that it computes no exponential and no
// division (min_rnn_saved_row_backward): minGRU [z, ±h~], minLSTM [f', q, ±h~], where ±h~ carries
// the sign of k_h (h~ > 0 always), the branch of g that h~ came from.
template <typename T, bool Save = false>
inline void min_rnn_step_row(const T* k, const T* c, T* h_row, T* out_row, std::int64_t hidden, bool lstm,
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
inline void min_rnn_step_row_backward(const T* k, const T* c, const T* g_row, const T* h_prev, T* dh_row, T* d_row,
                                      std::int64_t hidden, bool lstm) {
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
inline void min_rnn_saved_row_backward(const T* saved, const T* g_row, const T* h_prev, T* dh_row, T* d_row,
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

// ------------------------------------------------------------------------------- bindings
void check_inputs(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh) {
  TORCH_CHECK(x_proj.dim() == 3, "rnnlab kernel: x_proj must be [T, B, gates·H], got ", x_proj.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == x_proj.size(1), "rnnlab kernel: h0 must be [B, H], got ", h0.sizes());
  TORCH_CHECK(x_proj.device().is_cpu(), "rnnlab kernel: CPU tensors only");
  TORCH_CHECK(x_proj.scalar_type() == h0.scalar_type() && x_proj.scalar_type() == w_hh.scalar_type(),
              "rnnlab kernel: x_proj, h0 and w_hh must share a dtype");
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

std::vector<Tensor> rnn_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool relu, bool save) {
  check_inputs(x_proj, h0, w_hh);
  x_proj = x_proj.contiguous(), h0 = h0.contiguous(), w_hh = w_hh.contiguous();
  b_hh = bias_or_zeros(b_hh, w_hh), ln_hh = contiguous_or_none(ln_hh), mask = contiguous_or_none(mask);
  lengths = contiguous_or_none(lengths);
  return RNNLAB_DISPATCH(x_proj, rnn_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, relu, save));
}

std::vector<Tensor> rnn_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, Tensor h0, Tensor w_hh,
                                 OptionalTensor b_hh, OptionalTensor ln_hh, OptionalTensor mask, OptionalTensor lengths,
                                 bool relu, Tensor output, OptionalTensor hh_hat, OptionalTensor hh_rstd) {
  grad_output = grad_output.contiguous(), grad_h_last = grad_h_last.contiguous();
  return RNNLAB_DISPATCH(x_proj, rnn_backward_impl<scalar_t>(grad_output, grad_h_last, x_proj, h0, w_hh, b_hh, ln_hh,
                                                             mask, lengths, relu, output, or_undefined(hh_hat),
                                                             or_undefined(hh_rstd)));
}

std::vector<Tensor> lstm_forward(Tensor x_proj, Tensor h0, Tensor c0, Tensor w_hh, OptionalTensor b_hh,
                                 OptionalTensor ln_hh, OptionalTensor ln_cell_w, OptionalTensor ln_cell_b,
                                 OptionalTensor mask, OptionalTensor lengths, bool save, OptionalTensor ln_ih,
                                 OptionalTensor b_ih) {
  check_inputs(x_proj, h0, w_hh);
  x_proj = x_proj.contiguous(), h0 = h0.contiguous(), c0 = c0.contiguous(), w_hh = w_hh.contiguous();
  b_hh = bias_or_zeros(b_hh, w_hh), ln_hh = contiguous_or_none(ln_hh), mask = contiguous_or_none(mask);
  ln_cell_w = contiguous_or_none(ln_cell_w), ln_cell_b = contiguous_or_none(ln_cell_b);
  lengths = contiguous_or_none(lengths), ln_ih = contiguous_or_none(ln_ih), b_ih = contiguous_or_none(b_ih);
  return RNNLAB_DISPATCH(x_proj, lstm_forward_impl<scalar_t>(x_proj, h0, c0, w_hh, b_hh, ln_hh, ln_cell_w, ln_cell_b,
                                                             mask, lengths, save, ln_ih, b_ih));
}

std::vector<Tensor> lstm_backward(Tensor grad_output, Tensor grad_h_last, Tensor grad_c_last, Tensor x_proj,
                                  Tensor h0, Tensor c0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                  OptionalTensor ln_cell_w, OptionalTensor ln_cell_b, OptionalTensor mask,
                                  OptionalTensor lengths, Tensor output, Tensor saved_gates, Tensor cells,
                                  OptionalTensor hh_hat, OptionalTensor hh_rstd,
                                  OptionalTensor c_mean, OptionalTensor c_rstd, OptionalTensor ln_ih, OptionalTensor b_ih,
                                  OptionalTensor x_mean, OptionalTensor x_rstd) {
  grad_output = grad_output.contiguous(), grad_h_last = grad_h_last.contiguous();
  grad_c_last = grad_c_last.contiguous();
  ln_ih = contiguous_or_none(ln_ih), b_ih = contiguous_or_none(b_ih);
  if (ln_ih.has_value()) x_proj = x_proj.contiguous();  // read again: LN(W_ih x_t) is recomputed from it
  return RNNLAB_DISPATCH(
      x_proj, lstm_backward_impl<scalar_t>(grad_output, grad_h_last, grad_c_last, x_proj, h0, c0, w_hh, b_hh, ln_hh,
                                           ln_cell_w, ln_cell_b, mask, lengths, output, saved_gates, cells,
                                           or_undefined(hh_hat), or_undefined(hh_rstd), or_undefined(c_mean),
                                           or_undefined(c_rstd), ln_ih, b_ih, or_undefined(x_mean),
                                           or_undefined(x_rstd)));
}

std::vector<Tensor> gru_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool cho, bool save) {
  check_inputs(x_proj, h0, w_hh);
  x_proj = x_proj.contiguous(), h0 = h0.contiguous(), w_hh = w_hh.contiguous();
  b_hh = bias_or_zeros(b_hh, w_hh), ln_hh = contiguous_or_none(ln_hh), mask = contiguous_or_none(mask);
  lengths = contiguous_or_none(lengths);
  if (cho)
    return RNNLAB_DISPATCH(x_proj, gru_cho_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save));
  return RNNLAB_DISPATCH(x_proj, gru_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save));
}

std::vector<Tensor> gru_backward(Tensor grad_output, Tensor grad_h_last, Tensor x_proj, Tensor h0, Tensor w_hh,
                                 OptionalTensor b_hh, OptionalTensor ln_hh, OptionalTensor mask, OptionalTensor lengths,
                                 bool cho, Tensor output, Tensor saved_gates, OptionalTensor hh_hat_in,
                                 OptionalTensor hh_rstd_in) {
  const Tensor hh_hat = or_undefined(hh_hat_in), hh_rstd = or_undefined(hh_rstd_in);
  grad_output = grad_output.contiguous(), grad_h_last = grad_h_last.contiguous();
  if (cho)
    return RNNLAB_DISPATCH(x_proj, gru_cho_backward_impl<scalar_t>(grad_output, grad_h_last, x_proj, h0, w_hh, b_hh,
                                                                   ln_hh, mask, lengths, output, saved_gates, hh_hat,
                                                                   hh_rstd));
  return RNNLAB_DISPATCH(x_proj, gru_backward_impl<scalar_t>(grad_output, grad_h_last, x_proj, h0, w_hh, b_hh, ln_hh,
                                                             mask, lengths, output, saved_gates, hh_hat, hh_rstd));
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

// ------------------------------------------------------------------------------ streaming
// One time step of a stacked unidirectional layer, every layer in one call: the real-time case,
// where a Python round trip per operation would cost more than the arithmetic. Weights per layer:
// [w_ih, w_hh, b_ih, b_hh, ln_ih, ln_hh, ln_cell_w, ln_cell_b] (None where absent).
class Stepper {
 public:
  Stepper(std::string kind, std::vector<std::vector<OptionalTensor>> layers) : kind_(std::move(kind)) {
    TORCH_CHECK(kind_ == "lstm" || kind_ == "gru" || kind_ == "gru_cho" || kind_ == "rnn_tanh" || kind_ == "rnn_relu",
                "rnnlab Stepper: unknown cell kind ", kind_);
    for (auto& weights : layers) {
      TORCH_CHECK(weights.size() == 8, "rnnlab Stepper: 8 tensors per layer expected, got ", weights.size());
      Layer layer;
      layer.w_ih = weights[0]->contiguous();
      layer.w_ih_t = layer.w_ih.t();
      layer.w_hh = weights[1]->contiguous();
      layer.b_ih = contiguous_or_none(weights[2]);
      layer.b_hh = bias_or_zeros(weights[3], layer.w_hh);
      layer.ln_ih = contiguous_or_none(weights[4]);
      layer.ln_hh = contiguous_or_none(weights[5]);
      layer.ln_cell_w = contiguous_or_none(weights[6]);
      layer.ln_cell_b = contiguous_or_none(weights[7]);
      layers_.push_back(std::move(layer));
    }
    direct_ = kind_ == "lstm" || kind_ == "gru" || kind_ == "rnn_tanh" || kind_ == "rnn_relu";
    for (const Layer& layer : layers_)
      direct_ = direct_ && !layer.ln_ih.has_value() && !layer.ln_hh.has_value() && !layer.ln_cell_w.has_value();
  }

  // states: h of each layer ([B, H]), and for the LSTM c after each h. Returns [output, states...].
  std::vector<Tensor> step(const Tensor& x, const std::vector<Tensor>& states) {
    const bool lstm = kind_ == "lstm";
    const std::size_t per_layer = lstm ? 2 : 1;
    TORCH_CHECK(states.size() == per_layer * layers_.size(), "rnnlab Stepper: expected ", per_layer * layers_.size(),
                " state tensors, got ", states.size());
    if (direct_ && x.dim() == 2 && x.size(0) <= kDirectRows) return RNNLAB_DISPATCH(x, step_direct<scalar_t>(x, states));
    Tensor input = x.contiguous();
    std::vector<Tensor> result(1 + states.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Layer& w = layers_[l];
      Tensor x_proj = RNNLAB_DISPATCH(input, project_input<scalar_t>(input, w)).unsqueeze(0);
      const Tensor h0 = states[l * per_layer].contiguous();
      std::vector<Tensor> out;
      if (lstm) {
        const Tensor c0 = states[l * per_layer + 1].contiguous();
        out = RNNLAB_DISPATCH(input, lstm_forward_impl<scalar_t>(x_proj, h0, c0, w.w_hh, w.b_hh, w.ln_hh, w.ln_cell_w,
                                                                 w.ln_cell_b, std::nullopt, std::nullopt, false));
        result[1 + l * 2 + 1] = out[2];
      } else if (kind_ == "gru" || kind_ == "gru_cho") {
        const bool cho = kind_ == "gru_cho";
        out = cho ? RNNLAB_DISPATCH(input, gru_cho_forward_impl<scalar_t>(x_proj, h0, w.w_hh, w.b_hh, w.ln_hh,
                                                                          std::nullopt, std::nullopt, false))
                  : RNNLAB_DISPATCH(input, gru_forward_impl<scalar_t>(x_proj, h0, w.w_hh, w.b_hh, w.ln_hh,
                                                                      std::nullopt, std::nullopt, false));
      } else {
        out = RNNLAB_DISPATCH(input, rnn_forward_impl<scalar_t>(x_proj, h0, w.w_hh, w.b_hh, w.ln_hh, std::nullopt,
                                                                std::nullopt, kind_ == "rnn_relu", false));
      }
      result[1 + l * per_layer] = out[1];
      input = out[0][0];
    }
    result[0] = input;
    return result;
  }

 private:
  struct Layer {
    Tensor w_ih, w_ih_t, w_hh;
    OptionalTensor b_ih, b_hh, ln_ih, ln_hh, ln_cell_w, ln_cell_b;
  };

  // ---- the direct path: a few rows of a plain LSTM, GRU (torch's form) or RNN, no layer norm.
  // At batch 1 the general path above spends most of a step on its machinery (a dozen tensors
  // made and viewed per layer, each through the dispatcher; measured: three quarters of the
  // step) rather than on its 80k multiply-adds. Here a step is the two matrix-vector products
  // into a stack buffer and one pass over the gates, with the same cell equations (and the same
  // Math<T>) as the kernels above; the only tensors made are the new states and the output.
  static constexpr std::int64_t kDirectRows = 4;

  // out[n] += Σ_k w[n, k] v[k] for n < outputs: dot products along the weight rows, read in place
  // so that in-place updates of the layer's weights are seen. Eight rows at a time: one row's dot
  // product is a chain of dependent FMAs, whose latency sets the pace; eight rows are eight
  // independent chains sharing the loads of v (measured: the step's two products at input 32,
  // hidden 128 in 7.8 µs instead of 11, on a loaded machine).
  template <typename T>
  static void add_matvec(const T* w, const T* v, T* out, std::int64_t outputs, std::int64_t inner) {
    std::int64_t n = 0;
    for (; n + 8 <= outputs; n += 8) {
      const T* w0 = w + n * inner;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7)
      for (std::int64_t k = 0; k < inner; ++k) {
        const T v_k = v[k];
        s0 += w0[k] * v_k;
        s1 += w0[inner + k] * v_k;
        s2 += w0[2 * inner + k] * v_k;
        s3 += w0[3 * inner + k] * v_k;
        s4 += w0[4 * inner + k] * v_k;
        s5 += w0[5 * inner + k] * v_k;
        s6 += w0[6 * inner + k] * v_k;
        s7 += w0[7 * inner + k] * v_k;
      }
      out[n] += s0, out[n + 1] += s1, out[n + 2] += s2, out[n + 3] += s3;
      out[n + 4] += s4, out[n + 5] += s5, out[n + 6] += s6, out[n + 7] += s7;
    }
    for (; n < outputs; ++n) {
      const T* w_row = w + n * inner;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (std::int64_t k = 0; k < inner; ++k) sum += w_row[k] * v[k];
      out[n] += sum;
    }
  }

  template <typename T>
  static void bias_into(const OptionalTensor& bias, T* out, std::int64_t n) {
    if (const T* b = ptr_or_null<T>(bias))
      std::copy_n(b, n, out);
    else
      std::fill_n(out, n, T(0));
  }

  template <typename T>
  std::vector<Tensor> step_direct(const Tensor& x_in, const std::vector<Tensor>& states) const {
    const std::size_t per_layer = kind_ == "lstm" ? 2 : 1;
    const Tensor x = x_in.contiguous();
    const std::int64_t rows = x.size(0);
    const auto options = x.options();
    std::vector<Tensor> result(1 + states.size());
    std::vector<T> pre, recurrent;  // [gates·H] of one row: W_ih x + b_ih (+ W_hh h + b_hh), W_hh h + b_hh
    const T* input = x.data_ptr<T>();
    std::int64_t input_size = x.size(1);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Layer& w = layers_[l];
      const std::int64_t gate_rows = w.w_hh.size(0), hidden = w.w_hh.size(1);
      TORCH_CHECK(w.w_ih.size(1) == input_size, "rnnlab Stepper: layer ", l, " expects input size ", w.w_ih.size(1),
                  ", got ", input_size);
      const Tensor h_old = states[l * per_layer].contiguous();
      TORCH_CHECK(h_old.dim() == 2 && h_old.size(0) == rows && h_old.size(1) == hidden && h_old.dtype() == x.dtype(),
                  "rnnlab Stepper: state h of layer ", l, " must be [", rows, ", ", hidden, "] ", x.dtype(), ", got ",
                  h_old.sizes(), " ", h_old.dtype());
      Tensor h_new = at::empty({rows, hidden}, options);
      Tensor c_old, c_new;
      if (per_layer == 2) {
        c_old = states[l * per_layer + 1].contiguous();
        TORCH_CHECK(c_old.sizes() == h_old.sizes() && c_old.dtype() == x.dtype(), "rnnlab Stepper: state c of layer ",
                    l, " must be [", rows, ", ", hidden, "], got ", c_old.sizes());
        c_new = at::empty({rows, hidden}, options);
      }
      pre.resize(gate_rows);
      recurrent.resize(gate_rows);
      const T* w_ih = w.w_ih.data_ptr<T>();
      const T* w_hh = w.w_hh.data_ptr<T>();
      for (std::int64_t b = 0; b < rows; ++b) {
        const T* x_row = input + b * input_size;
        const T* h_row = h_old.data_ptr<T>() + b * hidden;
        T* h_out = h_new.data_ptr<T>() + b * hidden;
        bias_into<T>(w.b_ih, pre.data(), gate_rows);
        add_matvec(w_ih, x_row, pre.data(), gate_rows, input_size);
        if (kind_ == "gru") {  // r and z take both products; n takes r ⊙ (W_hn h + b_hn)
          bias_into<T>(w.b_hh, recurrent.data(), gate_rows);
          add_matvec(w_hh, h_row, recurrent.data(), gate_rows, hidden);
          const T* gi = pre.data();
          const T* gh = recurrent.data();
#pragma omp simd
          for (std::int64_t j = 0; j < hidden; ++j) {
            const T r = Math<T>::sigmoid(gi[j] + gh[j]), z = Math<T>::sigmoid(gi[hidden + j] + gh[hidden + j]);
            const T n = Math<T>::tanh(gi[2 * hidden + j] + r * gh[2 * hidden + j]);
            h_out[j] = (T(1) - z) * n + z * h_row[j];
          }
          continue;
        }
        if (const T* b_hh = ptr_or_null<T>(w.b_hh))
          for (std::int64_t j = 0; j < gate_rows; ++j) pre[j] += b_hh[j];
        add_matvec(w_hh, h_row, pre.data(), gate_rows, hidden);
        const T* g = pre.data();
        if (kind_ == "lstm") {  // gates [i f g o], torch.nn's order
          const T* c_row = c_old.data_ptr<T>() + b * hidden;
          T* c_out = c_new.data_ptr<T>() + b * hidden;
#pragma omp simd
          for (std::int64_t j = 0; j < hidden; ++j) {
            const T i = Math<T>::sigmoid(g[j]), f = Math<T>::sigmoid(g[hidden + j]);
            const T cell = f * c_row[j] + i * Math<T>::tanh(g[2 * hidden + j]);
            c_out[j] = cell;
            h_out[j] = Math<T>::sigmoid(g[3 * hidden + j]) * Math<T>::tanh(cell);
          }
        } else if (kind_ == "rnn_relu") {
          for (std::int64_t j = 0; j < hidden; ++j) h_out[j] = g[j] > T(0) ? g[j] : T(0);
        } else {
#pragma omp simd
          for (std::int64_t j = 0; j < hidden; ++j) h_out[j] = Math<T>::tanh(g[j]);
        }
      }
      result[1 + l * per_layer] = h_new;
      if (per_layer == 2) result[2 + l * per_layer] = c_new;
      input = h_new.data_ptr<T>();
      input_size = hidden;
    }
    // the output is the top layer's h, as its own tensor: a caller may change one in place
    result[0] = at::empty({rows, input_size}, options);
    std::copy_n(input, rows * input_size, result[0].data_ptr<T>());
    return result;
  }

  // W_ih x + b_ih, or LN(W_ih x) γ_ih + b_ih: [B, gates·H]
  template <typename T>
  static Tensor project_input(const Tensor& x, const Layer& w) {
    const std::int64_t rows = x.size(0), outputs = w.w_ih.size(0);
    Tensor projected = at::empty({rows, outputs}, x.options());
    matmul_weight_t<T>(projected, x, w.w_ih, w.w_ih_t);
    const T* bias = ptr_or_null<T>(w.b_ih);
    const T* gain = ptr_or_null<T>(w.ln_ih);
    T* data = projected.data_ptr<T>();
    for (std::int64_t b = 0; b < rows; ++b) {
      T* row = data + b * outputs;
      if (gain != nullptr) {
        normalise_row(row, row, outputs);
#pragma omp simd
        for (std::int64_t j = 0; j < outputs; ++j) row[j] *= gain[j];
      }
      if (bias != nullptr) {
#pragma omp simd
        for (std::int64_t j = 0; j < outputs; ++j) row[j] += bias[j];
      }
    }
    return projected;
  }

  std::string kind_;
  std::vector<Layer> layers_;
  bool direct_ = false;  // step_direct applies (the kind and no layer norm)
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "rnnlab's CPU recurrent kernels (see recurrent.cpp)";
  module.def("rnn_forward", &rnn_forward);
  module.def("rnn_backward", &rnn_backward);
  module.def("lstm_forward", &lstm_forward);
  module.def("lstm_backward", &lstm_backward);
  module.def("gru_forward", &gru_forward);
  module.def("gru_backward", &gru_backward);
  module.def("min_rnn_forward", &min_rnn_forward);
  // W_hh size (bytes) above which the cells run the shared-steps schedule; returns the previous value
  module.def("min_rnn_backward", &min_rnn_backward);
  module.def("min_rnn_layer_forward", &min_rnn_layer_forward);
  module.def("min_rnn_layer_backward", &min_rnn_layer_backward);
  pybind11::class_<Stepper>(module, "Stepper")
      .def(pybind11::init<std::string, std::vector<std::vector<OptionalTensor>>>())
      .def("step", &Stepper::step);
}
