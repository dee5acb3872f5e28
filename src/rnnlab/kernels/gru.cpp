// The GRU (rnnlab/cells/gru.py) in its two forms.
//
// torch's form: hh = LN(h_{t-1} W^T) γ + b = [hh_r hh_z hh_n];  r = σ(x_r + hh_r), z = σ(x_z + hh_z),
// n = tanh(x_n + r hh_n), h_t = (1 − z) n + z h_{t-1}. Saved: [r z n hh_n] per step (+ LN).
// Backward: dn = dh (1 − z)(1 − n²), dr = dn hh_n r (1 − r), dz = dh (h_{t-1} − n) z (1 − z);
// d_hh = [dr dz r dn], dh_{t-1} = dh z + (d_raw W) ⊙ m.
//
// Cho's form: [hh_r hh_z] = LN(h_in W_rz^T) γ_rz + b_rz;  r = σ(x_r + hh_r), z = σ(x_z + hh_z);
// h~ = tanh(x_n + LN((r ⊙ h_in) W_n^T) γ_n + b_n);  h_t = (1 − z) h_{t-1} + z h~ (h_in = h_{t-1} ⊙ m).
// Two GEMMs per step, the second on r ⊙ h_in. Saved: [r z h~] per step (+ x_hat of both norms,
// rstd [T, B, 2]). Backward: dh~ = dh z (1 − h~²), dz = dh (h~ − h_{t-1}) z (1 − z),
// d(r ⊙ h_in) = d_raw_n W_n, dr = d(r ⊙ h_in) h_in r (1 − r);
// dh_{t-1} = dh (1 − z) + (d(r ⊙ h_in) r + d_raw_rz W_rz) ⊙ m.

#include "recurrent.h"

#include <cstdint>
#include <vector>

namespace rnnlab {
namespace {

// ------------------------------------------------------------------------ GRU, torch's form
template <typename T>
std::vector<Tensor> gru_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                     const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                     const OptionalTensor& mask, const OptionalTensor& lengths, bool save) {
  const ForwardLoop<T> loop(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save, 4 * h0.size(1));
  const std::int64_t batch = loop.batch, hidden = loop.hidden, gates = loop.gates;
  const T* bias = loop.bias;
  loop.run([&](std::int64_t t, std::int64_t slot, std::int64_t b) {
    const T* x_row = loop.x_proj_data + (t * batch + b) * gates;
    T* out_row = loop.output_data + (t * batch + b) * hidden;
    T* hh_row = loop.recurrent_row(slot, b);
    T* gate_row = loop.saved_gates_data + (slot * batch + b) * 4 * hidden;
    T* h_row = loop.h_data + b * hidden;
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
  });
  return {loop.output, loop.h, loop.saved_gates, loop.hh_hat, loop.hh_rstd};
}

template <typename T>
std::vector<Tensor> gru_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                      const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                      const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                      const OptionalTensor& lengths, const Tensor& output, const Tensor& saved_gates,
                                      const Tensor& hh_hat, const Tensor& hh_rstd) {
  const BackwardLoop<T> loop(grad_output, grad_h_last, x_proj, h0, w_hh, ln_hh, mask, lengths, output, hh_hat, hh_rstd);
  const std::int64_t batch = loop.batch, hidden = loop.hidden, gates = loop.gates;
  Tensor d_x = loop.new_gradient();   // grad of x_proj
  Tensor d_hh = loop.new_gradient();  // grad of LN(h W^T) γ + b (differs in the n block)
  Tensor d_raw = loop.layer_norm ? loop.new_gradient() : d_hh;
  T* const d_x_data = data_or_null<T>(d_x);
  T* const d_hh_data = data_or_null<T>(d_hh);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  loop.run(d_raw, {d_x_data, d_hh_data, d_raw_data}, [&](std::int64_t t, std::int64_t b) {
    const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
    T* d_x_row = d_x_data + gate_offset;
    T* d_hh_row = d_hh_data + gate_offset;
    T* d_raw_row = d_raw_data + gate_offset;
    const T* g_row = loop.grad_output_data + state_offset;
    const T* gate_row = saved_gates_data + (t * batch + b) * 4 * hidden;
    const T* h_prev = loop.h_prev(t, b);
    T* dh_row = loop.dh_next_data + b * hidden;
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
    if (loop.layer_norm)
      normalise_row_backward(d_hh_row, loop.gain, loop.hh_hat_data + gate_offset, loop.hh_rstd_data[t * batch + b],
                             d_raw_row, gates);
  });
  return loop.gradients(d_x, recurrent_weight_gradient(d_raw, output, h0, mask), d_hh, b_hh);
}

// -------------------------------------------------------------------------- GRU, Cho's form
template <typename T>
std::vector<Tensor> gru_cho_forward_impl(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                         const OptionalTensor& b_hh, const OptionalTensor& ln_hh,
                                         const OptionalTensor& mask, const OptionalTensor& lengths, bool save) {
  const ForwardLoop<T> loop(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths, save, 3 * h0.size(1), 2);
  const std::int64_t steps = loop.steps, batch = loop.batch, hidden = loop.hidden, gates = loop.gates;
  const auto options = loop.options;
  Tensor hh_rz = at::empty({batch, 2 * hidden}, options);
  Tensor hh_n = at::empty({batch, hidden}, options);
  Tensor reset_input = at::empty({batch, hidden}, options);  // r ⊙ h_in
  const T* bias = loop.bias;
  const T* gain = loop.gain;
  T* const reset_input_data = data_or_null<T>(reset_input);
  T* const hh_rz_data = data_or_null<T>(hh_rz);
  T* const hh_n_data = data_or_null<T>(hh_n);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor h_rows = loop.h.narrow(0, begin, rows), hh_rz_rows = hh_rz.narrow(0, begin, rows);
    Tensor hh_n_rows = hh_n.narrow(0, begin, rows), reset_rows = reset_input.narrow(0, begin, rows);
    Tensor masked_rows = loop.masked.defined() ? loop.masked.narrow(0, begin, rows) : loop.masked;
    const T* mask_rows = loop.mask_data == nullptr ? nullptr : loop.mask_data + begin * hidden;
    const StepProduct<T> product_rz(w_hh.narrow(0, 0, 2 * hidden), rows, true, steps);
    const StepProduct<T> product_n(w_hh.narrow(0, 2 * hidden, hidden), rows, true, steps);
    for (std::int64_t t = 0; t < steps; ++t) {
      const Tensor h_in = masked_input<T>(h_rows, mask_rows, masked_rows);
      const T* h_in_data = h_in.data_ptr<T>() - begin * hidden;  // indexed by the global row b
      product_rz.run(hh_rz_rows, h_in);
      const std::int64_t slot = save ? t : 0;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        T* reset_row = reset_input_data + b * hidden;
        if (!loop.valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) reset_row[j] = 0;
          return;
        }
        const T* x_row = loop.x_proj_data + (t * batch + b) * gates;
        T* rz_row = hh_rz_data + b * 2 * hidden;
        if (loop.layer_norm) {
          T* hat = loop.hh_hat_data + (slot * batch + b) * gates;
          loop.hh_rstd_data[(slot * batch + b) * 2] =
              normalise_affine_row<true, false>(rz_row, hat, gain, nullptr, rz_row, 2 * hidden);
        }
        T* gate_row = loop.saved_gates_data + (slot * batch + b) * gates;
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
        T* out_row = loop.output_data + (t * batch + b) * hidden;
        if (!loop.valid.valid(b, t)) {
          for (std::int64_t j = 0; j < hidden; ++j) out_row[j] = 0;
          return;
        }
        const T* x_row = loop.x_proj_data + (t * batch + b) * gates;
        T* n_row = hh_n_data + b * hidden;
        if (loop.layer_norm) {
          T* hat = loop.hh_hat_data + (slot * batch + b) * gates + 2 * hidden;
          loop.hh_rstd_data[(slot * batch + b) * 2 + 1] =
              normalise_affine_row<true, false>(n_row, hat, gain + 2 * hidden, nullptr, n_row, hidden);
        }
        T* gate_row = loop.saved_gates_data + (slot * batch + b) * gates;
        T* h_row = loop.h_data + b * hidden;
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
  return {loop.output, loop.h, loop.saved_gates, loop.hh_hat, loop.hh_rstd};
}

template <typename T>
std::vector<Tensor> gru_cho_backward_impl(const Tensor& grad_output, const Tensor& grad_h_last, const Tensor& x_proj,
                                          const Tensor& h0, const Tensor& w_hh, const OptionalTensor& b_hh,
                                          const OptionalTensor& ln_hh, const OptionalTensor& mask,
                                          const OptionalTensor& lengths, const Tensor& output,
                                          const Tensor& saved_gates, const Tensor& hh_hat, const Tensor& hh_rstd) {
  const BackwardLoop<T> loop(grad_output, grad_h_last, x_proj, h0, w_hh, ln_hh, mask, lengths, output, hh_hat, hh_rstd);
  const std::int64_t steps = loop.steps, batch = loop.batch, hidden = loop.hidden, gates = loop.gates;
  Tensor d_pre = loop.new_gradient();  // grad of x_proj = grad of LN(...)γ + b
  Tensor d_raw = loop.layer_norm ? loop.new_gradient() : d_pre;
  Tensor d_reset_input = at::empty({batch, hidden}, loop.options);
  const T* gain = loop.gain;
  const Tensor w_rz = w_hh.narrow(0, 0, 2 * hidden);
  const Tensor w_n = w_hh.narrow(0, 2 * hidden, hidden);
  Tensor inputs = recurrent_inputs(output, h0, mask);  // h_in of every step
  T* const d_pre_data = data_or_null<T>(d_pre);
  T* const d_raw_data = data_or_null<T>(d_raw);
  T* const saved_gates_data = data_or_null<T>(saved_gates);
  T* const inputs_data = data_or_null<T>(inputs);
  T* const d_reset_input_data = data_or_null<T>(d_reset_input);
  for_each_row_block(batch, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t rows = end - begin;
    Tensor dh_in_rows = loop.dh_in.narrow(0, begin, rows), dh_next_rows = loop.dh_next.narrow(0, begin, rows);
    const T* mask_rows = loop.mask_data == nullptr ? nullptr : loop.mask_data + begin * hidden;
    Tensor d_reset_rows = d_reset_input.narrow(0, begin, rows);
    const StepProduct<T> back_rz(w_rz, rows, false, steps), back_n(w_n, rows, false, steps);
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates, state_offset = (t * batch + b) * hidden;
        T* d_pre_row = d_pre_data + gate_offset;
        T* d_raw_row = d_raw_data + gate_offset;
        if (!loop.valid.valid(b, t)) {
          for (std::int64_t j = 0; j < gates; ++j) d_pre_row[j] = d_raw_row[j] = 0;
          return;
        }
        const T* g_row = loop.grad_output_data + state_offset;
        const T* gate_row = saved_gates_data + gate_offset;
        const T* h_prev = loop.h_prev(t, b);
        T* dh_row = loop.dh_next_data + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T z_t = gate_row[hidden + j], h_tilde = gate_row[2 * hidden + j];
          const T dh = g_row[j] + dh_row[j];
          d_pre_row[hidden + j] = dh * (h_tilde - h_prev[j]) * z_t * (T(1) - z_t);
          d_pre_row[2 * hidden + j] = dh * z_t * (T(1) - h_tilde * h_tilde);
          dh_row[j] = dh * (T(1) - z_t);  // the direct path h_t ← (1 − z_t) h_{t-1}
        }
        if (loop.layer_norm)
          normalise_row_backward(d_pre_row + 2 * hidden, gain + 2 * hidden,
                                 loop.hh_hat_data + gate_offset + 2 * hidden,
                                 loop.hh_rstd_data[(t * batch + b) * 2 + 1], d_raw_row + 2 * hidden, hidden);
      }();
      // d(r ⊙ h_in) = d(hh_n raw) W_n
      back_n.run(d_reset_rows, d_raw[t].narrow(0, begin, rows).narrow(1, 2 * hidden, hidden));
      const T* h_in_t = inputs_data + t * batch * hidden;
      for (std::int64_t b = begin; b < end; ++b) [&] {
        const std::int64_t gate_offset = (t * batch + b) * gates;
        T* d_reset_row = d_reset_input_data + b * hidden;
        if (!loop.valid.valid(b, t)) return;  // rows of d_raw are zero there, so d(r ⊙ h_in) is too
        T* d_pre_row = d_pre_data + gate_offset;
        const T* gate_row = saved_gates_data + gate_offset;
        const T* h_in_row = h_in_t + b * hidden;
#pragma omp simd
        for (std::int64_t j = 0; j < hidden; ++j) {
          const T r_t = gate_row[j];
          d_pre_row[j] = d_reset_row[j] * h_in_row[j] * r_t * (T(1) - r_t);
          d_reset_row[j] = d_reset_row[j] * r_t;  // now the part of dh_in through r ⊙ h_in
        }
        if (loop.layer_norm)
          normalise_row_backward(d_pre_row, gain, loop.hh_hat_data + gate_offset,
                                 loop.hh_rstd_data[(t * batch + b) * 2], d_raw_data + gate_offset, 2 * hidden);
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
  return loop.gradients(d_pre, grad_w, d_pre, b_hh);
}

}  // namespace

std::vector<Tensor> gru_forward(Tensor x_proj, Tensor h0, Tensor w_hh, OptionalTensor b_hh, OptionalTensor ln_hh,
                                OptionalTensor mask, OptionalTensor lengths, bool cho, bool save) {
  prepare_forward(x_proj, h0, w_hh, b_hh, ln_hh, mask, lengths);
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

std::vector<Tensor> gru_inference(const Tensor& x_proj, const Tensor& h0, const Tensor& w_hh,
                                  const OptionalTensor& b_hh, const OptionalTensor& ln_hh, bool cho) {
  if (cho)
    return RNNLAB_DISPATCH(x_proj, gru_cho_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, std::nullopt,
                                                                  std::nullopt, false));
  return RNNLAB_DISPATCH(x_proj, gru_forward_impl<scalar_t>(x_proj, h0, w_hh, b_hh, ln_hh, std::nullopt, std::nullopt,
                                                            false));
}

}  // namespace rnnlab
