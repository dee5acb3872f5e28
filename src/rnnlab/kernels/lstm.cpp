// The LSTM (rnnlab/cells/lstm.py), with its layer norms (recurrent, cell and input) and recurrent
// dropout: pre = x_t + LN(h_{t-1} W^T) γ + b, gates [i f g o] (torch.nn's order);
// c_t = f c_{t-1} + i g, h_t = o tanh(LN(c_t) γ_c + β_c). Saved: activated gates [T, B, 4H], the
// cell states c_t and, with layer norm, x_hat and rstd of the recurrent norm
// and mean and rstd of the cell's and the input's (their x_hat is recomputed in backward).
// With the input norm, x_t = LN(W_ih x_t) γ_ih + b_ih is computed here from the raw W_ih x_t.
// Backward, with dh = g_t + dh_t and s = LN(c_t) γ_c + β_c (or c_t): do = dh tanh(s) o (1 − o),
// ds = dh o (1 − tanh²(s)) (through LN's backward to dc_t), dc = dc_t + ds, di = dc g i (1 − i),
// df = dc c_{t-1} f (1 − f), dg = dc i (1 − g²), dc_{t-1} = dc f, dh_{t-1} = (d_raw W) ⊙ m.

#include "recurrent.h"

#include <cstdint>
#include <vector>

namespace rnnlab {
namespace {

template <typename T>
std::vector<Tensor> lstm_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                      const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                      const OptionalTensor& ln_cell_w, const OptionalTensor& ln_cell_b,
                                      const OptionalTensor& mask, const OptionalTensor& lengths, bool save,
                                      const OptionalTensor& ln_ih = std::nullopt,
                                      const OptionalTensor& b_ih = std::nullopt) {
  const ForwardLoop<T> loop(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save, 4 * h0.size(1));
  const std::int64_t batch = loop.batch, hidden = loop.hidden, gates = loop.gates, slots = loop.slots;
  const auto options = loop.options;
  Tensor c = c0.clone();
  Tensor cells = saved_buffer(lengths, {slots, batch, hidden}, options);
  const bool cell_norm = ln_cell_w.has_value();
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
  const T* bias = loop.bias;
  const T* input_gain = ptr_or_null<T>(ln_ih);
  const T* input_bias = ptr_or_null<T>(b_ih);
  const T* cell_gain = ptr_or_null<T>(ln_cell_w);
  const T* cell_bias = ptr_or_null<T>(ln_cell_b);
  T* const x_mean_data = data_or_null<T>(x_mean);
  T* const x_rstd_data = data_or_null<T>(x_rstd);
  T* const cells_data = data_or_null<T>(cells);
  T* const c_data = data_or_null<T>(c);
  T* const c_rstd_data = data_or_null<T>(c_rstd);
  T* const c_mean_data = data_or_null<T>(c_mean);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    std::vector<T> x_normalised(input_norm ? gates : 0);  // LN(W_ih x_t) γ_ih + b_ih of one row
    std::vector<T> tanh_scratch(hidden);  // LN(c_t) γ_c + β_c, then its tanh (recomputed in backward)
    loop.block(begin, end, [&](std::int64_t t, std::int64_t slot, std::int64_t b) {
      T* out_row = loop.output_data + (t * batch + b) * hidden;
      const T* x_row = loop.x_proj_data + (t * batch + b) * gates;
      T* hh_row = loop.recurrent_row(slot, b);
      if (input_norm) {
        T* normalised = x_normalised.data();
        T* mean = x_mean_data + slot * batch + b;
        x_rstd_data[slot * batch + b] =
            input_bias == nullptr
                ? normalise_affine_row<false, false>(x_row, nullptr, input_gain, nullptr, normalised, gates, mean)
                : normalise_affine_row<false, true>(x_row, nullptr, input_gain, input_bias, normalised, gates, mean);
        x_row = normalised;
      }
      T* gate_row = loop.saved_gates_data + (slot * batch + b) * gates;
      T* cell_row = cells_data + (slot * batch + b) * hidden;
      T* tanh_row = tanh_scratch.data();
      T* h_row = loop.h_data + b * hidden;
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
    });
  });
  return {loop.output, loop.h, c, loop.saved_gates, cells, loop.hh_hat, loop.hh_rstd, c_mean, c_rstd, x_mean, x_rstd};
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
  const BackwardLoop<T> loop(grad_output, grad_h_last, x_proj, h0, w_hh, ln_hh, mask, lengths, output, hh_hat, hh_rstd);
  const std::int64_t batch = loop.batch, hidden = loop.hidden, gates = loop.gates;
  const auto options = loop.options;
  const bool layer_norm = loop.layer_norm;
  const bool cell_norm = ln_cell_w.has_value();
  const bool input_norm = ln_ih.has_value();
  // d_pre, the gradient of the pre-activation, is a returned tensor (d_x or d_raw) unless both
  // norms stand between; then it lives one row at a time and Σ d_pre (the biases' gradient) is
  // added up per thread as it goes, instead of a sequence-long tensor summed at the end.
  const bool d_pre_whole = !layer_norm || !input_norm;
  const bool bias_sums = !d_pre_whole && (b_hh.has_value() || b_ih.has_value());
  Tensor d_pre = d_pre_whole ? loop.new_gradient() : undefined();
  Tensor d_x = input_norm ? loop.new_gradient() : d_pre;  // grad of the raw W_ih x
  Tensor d_raw = layer_norm ? loop.new_gradient() : d_pre;
  Tensor dc_next = grad_c_last.clone();
  Tensor d_shown = at::empty({batch, hidden}, options), d_shown_in = at::empty({batch, hidden}, options);
  // γ, γ_c, β_c gradients: sums over all steps and rows, added up while each row's values are still
  // in cache (one double accumulator per thread), not as products over the saved sequence at the end.
  const std::int64_t threads = at::get_num_threads();
  std::vector<double> sum_gain(layer_norm ? threads * gates : 0), sum_input_gain(input_norm ? threads * gates : 0);
  std::vector<double> sum_cell_w(cell_norm ? threads * hidden : 0), sum_cell_b(cell_norm ? threads * hidden : 0);
  std::vector<double> sum_bias(bias_sums ? threads * gates : 0);
  const T* gain = loop.gain;
  const T* cell_gain = ptr_or_null<T>(ln_cell_w);
  const T* cell_bias = ptr_or_null<T>(ln_cell_b);
  const T* input_gain = ptr_or_null<T>(ln_ih);
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const d_x_data = data_or_null<T>(d_x);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const cells_data = data_or_null<T>(cells);
  T* const c_mean_data = data_or_null<T>(c_mean);
  T* const c_rstd_data = data_or_null<T>(c_rstd);
  T* const dc_next_data = data_or_null<T>(dc_next);
  T* const d_shown_data = data_or_null<T>(d_shown);
  T* const d_shown_in_data = data_or_null<T>(d_shown_in);
  T* const x_proj_data = data_or_null<T>(x_proj);
  T* const x_mean_data = data_or_null<T>(x_mean);
  T* const x_rstd_data = data_or_null<T>(x_rstd);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    std::vector<T> x_hat_row(input_norm ? gates : 0), c_hat_row(cell_norm ? hidden : 0);  // recomputed LN(·) of one row
    std::vector<T> d_pre_scratch(d_pre_whole ? 0 : gates), tanh_scratch(hidden);
    loop.block(begin, end, d_raw, {d_pre_data, d_raw_data, d_x_data}, [&](std::int64_t t, std::int64_t b) {
      const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
      T* d_pre_row = d_pre_whole ? d_pre_data + gate_offset : d_pre_scratch.data();
      T* d_raw_row = d_raw_data + gate_offset;
      T* d_x_row = d_x_data + gate_offset;
      const T* g_row = loop.grad_output_data + state_offset;
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
      T* dh_row = loop.dh_next_data + b * hidden;
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
        const T* hat = loop.hh_hat_data + gate_offset;
        const T rstd = loop.hh_rstd_data[t * batch + b];
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
    });
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
  return {d_x, loop.dh_next, dc_next, grad_w, grad_b, grad_ln, grad_cw, grad_cb, grad_input_ln, grad_input_b};
}

}  // namespace

std::vector<Tensor> lstm_forward(Tensor x_proj, Tensor h0, Tensor c0, Tensor w_hh, OptionalTensor b_hh,
                                 OptionalTensor ln_hh, OptionalTensor ln_cell_w, OptionalTensor ln_cell_b,
                                 OptionalTensor mask, OptionalTensor lengths, bool save, OptionalTensor ln_ih,
                                 OptionalTensor b_ih) {
  prepare_forward(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths);
  c0 = c0.contiguous();
  ln_cell_w = contiguous_or_none(ln_cell_w), ln_cell_b = contiguous_or_none(ln_cell_b);
  ln_ih = contiguous_or_none(ln_ih), b_ih = contiguous_or_none(b_ih);
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

std::vector<Tensor> lstm_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                   const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                   const OptionalTensor& ln_cell_w, const OptionalTensor& ln_cell_b) {
  return RNNLAB_DISPATCH(x_proj, lstm_forward_impl<scalar_t>(x_proj, h0, c0, w_hh, b_hh, ln_hh, ln_cell_w, ln_cell_b,
                                                             std::nullopt, std::nullopt, false));
}

}  // namespace rnnlab
