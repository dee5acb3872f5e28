// The module rnnlab's kernels compile into: the Python bindings of every family's kernels (declared
// in recurrent.h, defined in rnn.cpp, lstm.cpp, gru.cpp and min_rnn.cpp) and the streaming Stepper,
// one time step of a stacked layer: for each layer l, x^l = W_ih x^{l-1} + b_ih (LN(W_ih x^{l-1}) γ_ih
// + b_ih with the input norm), then the cell's step on (x^l, h^l) with the same gate code as the
// training kernels; for up to four rows of a plain LSTM, GRU or RNN, the step's two products and
// one pass over the gates written out here (step_direct), with the same equations and Math<T>.

#include "recurrent.h"

#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rnnlab {
namespace {

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
        out = lstm_inference(x_proj, h0, c0, w.w_hh, w.b_hh, w.ln_hh, w.ln_cell_w, w.ln_cell_b);
        result[1 + l * 2 + 1] = out[2];
      } else if (kind_ == "gru" || kind_ == "gru_cho") {
        out = gru_inference(x_proj, h0, w.w_hh, w.b_hh, w.ln_hh, kind_ == "gru_cho");
      } else {
        out = rnn_inference(x_proj, h0, w.w_hh, w.b_hh, w.ln_hh, kind_ == "rnn_relu");
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
  // Math<T>) as the training kernels; the only tensors made are the new states and the output.
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
}  // namespace rnnlab

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "rnnlab's CPU recurrent kernels (see recurrent.h)";
  module.def("rnn_forward", &rnnlab::rnn_forward);
  module.def("rnn_backward", &rnnlab::rnn_backward);
  module.def("lstm_forward", &rnnlab::lstm_forward);
  module.def("lstm_backward", &rnnlab::lstm_backward);
  module.def("gru_forward", &rnnlab::gru_forward);
  module.def("gru_backward", &rnnlab::gru_backward);
  module.def("min_rnn_forward", &rnnlab::min_rnn_forward);
  module.def("min_rnn_backward", &rnnlab::min_rnn_backward);
  module.def("min_rnn_layer_forward", &rnnlab::min_rnn_layer_forward);
  module.def("min_rnn_layer_backward", &rnnlab::min_rnn_layer_backward);
  pybind11::class_<rnnlab::Stepper>(module, "Stepper")
      .def(pybind11::init<std::string, std::vector<std::vector<rnnlab::OptionalTensor>>>())
      .def("step", &rnnlab::Stepper::step);
}
