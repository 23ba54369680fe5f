// RUN: colossal-opt %s --split-input-file --colossal-autodiff --verify-diagnostics

// expected-error @+1 {{has no result named 'loss' to differentiate}}
func.func @main(%x: tensor<3xf32> {colossal.name = "x"}) -> (tensor<3xf32> {colossal.name = "y"}) {
  return %x : tensor<3xf32>
}

// -----

// expected-error @+1 {{requires a float scalar loss, got 'tensor<3xf32>'}}
func.func @main(%x: tensor<3xf32> {colossal.name = "x"}) -> (tensor<3xf32> {colossal.name = "loss"}) {
  return %x : tensor<3xf32>
}

// -----

// expected-error @+1 {{the loss depends on no trainable weight}}
func.func @main(%x: tensor<3xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "w" : tensor<3xf32>
  %p = colossal.mul %x, %w : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
  %loss = colossal.reduce_sum %p {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<3xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}

// -----

// An op without a gradient rule on the path from a trainable weight.
// expected-remark @+1 {{the loss is not a mean softmax_cross_entropy}}
func.func @main(%i: tensor<2x1xi64> {colossal.name = "i"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "w" {trainable} : tensor<4x3xf32>
  // expected-error @+1 {{'colossal.gather_nd' op has no gradient rule}}
  %g = colossal.gather_nd %w, %i : (tensor<4x3xf32>, tensor<2x1xi64>) -> tensor<2x3xf32>
  %loss = colossal.reduce_sum %g {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<2x3xf32>) -> tensor<f32>
  return %loss : tensor<f32>
}
