// The vanilla RNN (rnnlab/cells/rnn.py): h_t = act(pre_t), pre_t = x_t + LN(h_{t-1} W^T) γ + b, with
// act = tanh or relu. Saved: the outputs (h_t) and, with layer norm, x_hat and rstd of each step.
// Backward: dpre_t = (g_t + dh_t) act'(pre_t), act' = 1 − h_t² (tanh) or [h_t > 0] (relu), read off
// the saved h_t; the cell has no direct path from h_t to h_{t-1}, so dh_{t-1} = (d_raw_t W) ⊙ m
// alone, with d_raw_t = dpre_t, or its backward through LN with layer norm.

#include "recurrent.h"

#include <cstdint>
#include <vector>

namespace rnnlab {
namespace {

template <typename T>
std::vector<Tensor> rnn_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                     const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                     const OptionalTensor& mask, const OptionalTensor& lengths, bool relu, bool save) {
  const ForwardLoop<T> loop(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save, 0);
  const std::int64_t batch = loop.batch, hidden = loop.hidden;
  const T* bias = loop.bias;
  loop.run([&](std::int64_t t, std::int64_t slot, std::int64_t b) {
    const T* x_row = loop.x_proj_data + (t * batch + b) * hidden;
    T* out_row = loop.output_data + (t * batch + b) * hidden;
    T* hh_row = loop.recurrent_row(slot, b);
    T* h_row = loop.h_data + b * hidden;
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T pre = x_row[j] + hh_row[j] + bias[j];
      const T h_t = relu ? (pre > T(0) ? pre : T(0)) : Math<T>::tanh(pre);
      out_row[j] = h_t;
      h_row[j] = h_t;
    }
  });
  return {loop.output, loop.h, loop.hh_hat, loop.hh_rstd};
}

template <typename T>
std::vector<Tensor> rnn_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                      const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                      const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                      const OptionalTensor& lengths, bool relu, const Tensor& output,
                                      const Tensor& hh_hat, const Tensor& hh_rstd) {
  const BackwardLoop<T> loop(grad_output, grad_h_last, x_proj, h0, w_hh, ln_hh, mask, lengths, output, hh_hat, hh_rstd);
  const std::int64_t batch = loop.batch, hidden = loop.hidden;
  Tensor d_pre = loop.new_gradient();  // = grad of x_proj, and of LN(...)γ + b
  Tensor d_raw = loop.layer_norm ? loop.new_gradient() : d_pre;  // grad of h W^T
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  loop.run(d_raw, {d_pre_data, d_raw_data}, [&](std::int64_t t, std::int64_t b) {
    const std::int64_t row = (t * batch + b) * hidden;
    T* d_pre_row = d_pre_data + row;
    T* d_raw_row = d_raw_data + row;
    const T* g_row = loop.grad_output_data + row;
    const T* h_row = loop.output_data + row;
    T* dh_row = loop.dh_next_data + b * hidden;
#pragma omp simd
    for (std::int64_t j = 0; j < hidden; ++j) {
      const T dh = g_row[j] + dh_row[j];
      d_pre_row[j] = relu ? (h_row[j] > T(0) ? dh : T(0)) : dh * (T(1) - h_row[j] * h_row[j]);
      dh_row[j] = 0;  // the vanilla cell has no direct path from h_t to h_{t-1}
    }
    if (loop.layer_norm)
      normalise_row_backward(d_pre_row, loop.gain, loop.hh_hat_data + row, loop.hh_rstd_data[t * batch + b],
                             d_raw_row, hidden);
  });
  return loop.gradients(d_pre, recurrent_weight_gradient(d_raw, output, h0, mask), d_pre, b_hh);
}

}  // namespace

std::vector<Tensor> rnn_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool relu, bool save) {
  prepare_forward(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths);
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

std::vector<Tensor> rnn_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                  const OptionalTensor& b_hh, const OptionalTensor& ln_hh, bool relu) {
  return RNNLAB_DISPATCH(x_proj, rnn_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, std::nullopt, std::nullopt,
                                                            relu, false));
}

}  // namespace rnnlab
