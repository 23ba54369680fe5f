// RUN: colossal-opt %s --split-input-file --verify-diagnostics

// Contraction dims must agree.
func.func @matmul_contraction(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  // expected-error @+1 {{'colossal.matmul' op matmul: contraction dims differ}}
  %0 = colossal.matmul %a, %b : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  return
}

// -----

// The result type must be what the shape rule gives.
func.func @add_wrong_result(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{result #0 must be 2x3xf32 by the op's shape rule, got 'tensor<3x3xf32>'}}
  %0 = colossal.add %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<3x3xf32>
  return
}

// -----

// Shapes that do not broadcast.
func.func @add_no_broadcast(%a: tensor<2x3xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{'colossal.add' op}}
  %0 = colossal.add %a, %b : (tensor<2x3xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  return
}

// -----

// Both operands of a binary op have one element type.
func.func @add_mixed_types(%a: tensor<3xf32>, %b: tensor<3xi64>) {
  // expected-error @+1 {{'colossal.add' op}}
  %0 = colossal.add %a, %b : (tensor<3xf32>, tensor<3xi64>) -> tensor<3xf32>
  return
}

// -----

// perm must be a permutation.
func.func @transpose_not_permutation(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{'colossal.transpose' op}}
  %0 = colossal.transpose %a {perm = array<i64: 0, 0>} : (tensor<2x3xf32>) -> tensor<2x2xf32>
  return
}

// -----

// A reshape keeps the element count.
func.func @reshape_count(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{'colossal.reshape' op}}
  %0 = colossal.reshape %a : (tensor<2x3xf32>) -> tensor<7xf32>
  return
}

// -----

// Dynamic shapes never reach the graph dialect.
func.func @dynamic_shape(%a: tensor<?x3xf32>) {
  // expected-error @+1 {{requires statically shaped operand #0}}
  %0 = colossal.relu %a : (tensor<?x3xf32>) -> tensor<?x3xf32>
  return
}

// -----

// Element types the runtime has no DType for are rejected.
func.func @no_runtime_dtype(%a: tensor<3xi16>) {
  // expected-error @+1 {{has no runtime element type for operand #0}}
  %0 = colossal.neg %a : (tensor<3xi16>) -> tensor<3xi16>
  return
}

// -----

// A slice index must stay inside the input.
func.func @slice_out_of_range(%a: tensor<4xf32>) {
  // expected-error @+1 {{'colossal.slice' op}}
  %0 = colossal.slice %a {starts = array<i64: 2>, steps = array<i64: 1>} : (tensor<4xf32>) -> tensor<3xf32>
  return
}

// -----

// Step 0 is not a slice.
func.func @slice_step_zero(%a: tensor<4xf32>) {
  // expected-error @+1 {{'colossal.slice' op}}
  %0 = colossal.slice %a {starts = array<i64: 0>, steps = array<i64: 0>} : (tensor<4xf32>) -> tensor<4xf32>
  return
}

// -----

// layer_norm's scale has the normalised dims' shape.
func.func @layer_norm_scale(%x: tensor<2x8xf32>, %s: tensor<4xf32>) {
  // expected-error @+1 {{'colossal.layer_norm' op}}
  %0 = colossal.layer_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x8xf32>, tensor<4xf32>) -> tensor<2x8xf32>
  return
}

// -----

// Labels must be integers with the scores' shape minus the class dim.
func.func @cross_entropy_labels(%s: tensor<4x10xf32>, %l: tensor<4xf32>) {
  // expected-error @+1 {{'colossal.softmax_cross_entropy' op}}
  %0 = colossal.softmax_cross_entropy %s, %l {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<4x10xf32>, tensor<4xf32>) -> tensor<f32>
  return
}

// -----

// Gather indices are integers.
func.func @gather_float_indices(%t: tensor<10x4xf32>, %i: tensor<3xf32>) {
  // expected-error @+1 {{'colossal.gather' op}}
  %0 = colossal.gather %t, %i {axis = 0 : i64} : (tensor<10x4xf32>, tensor<3xf32>) -> tensor<3x4xf32>
  return
}

// -----

// An attribute of the wrong kind is named.
func.func @wrong_attr_kind(%a: tensor<2x3xf32>) {
  // expected-error @+1 {{'colossal.softmax' op attribute 'axis' failed to satisfy constraint}}
  %0 = colossal.softmax %a {axis = 1.0 : f32} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  return
}

// -----

// A weight names its initializer.
func.func @weight_without_name() {
  // expected-error @+1 {{requires a non-empty initializer name}}
  %0 = colossal.weight "" : tensor<3xf32>
  return
}

// -----

// Concat inputs agree on every dim but the axis.
func.func @concat_mismatch(%a: tensor<2x3xf32>, %b: tensor<3x3xf32>) {
  // expected-error @+1 {{'colossal.concat' op}}
  %0 = colossal.concat %a, %b {axis = 1 : i64} : (tensor<2x3xf32>, tensor<3x3xf32>) -> tensor<2x6xf32>
  return
}

// -----

// Zero-size tensors are fine (must not crash).
func.func @zero_size(%a: tensor<0x3xf32>) -> tensor<0x3xf32> {
  %0 = colossal.relu %a : (tensor<0x3xf32>) -> tensor<0x3xf32>
  return %0 : tensor<0x3xf32>
}
