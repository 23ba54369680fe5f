// RUN: colossal-opt %s --colossal-autodiff --colossal-build-optimizer-step=fuse=true 2>/dev/null | FileCheck %s --check-prefix=FUSED
// The fused step: micro_step becomes train_step(x, __step); each update sits
// right after its weight's gradient and last read (w2's before w1's: the
// backward reaches it first); no gradient state remains.
// FUSED-LABEL: func.func @train_step(
// FUSED-SAME: %[[STEP:arg[0-9]+]]: tensor<i64> {colossal.name = "__step"})
// FUSED-SAME: -> (tensor<f32> {colossal.name = "loss"}, tensor<f32> {colossal.name = "__count"}, tensor<f32> {colossal.name = "grad_norm"}, tensor<f32> {colossal.name = "lr"})
// FUSED-NOT: grad.
// FUSED: %[[DW2:.+]] = colossal.matmul %{{.+}}, %{{.+}} {transpose_a = 1 : i64}
// FUSED: colossal.adamw %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[STEP]]
// FUSED-NEXT: colossal.assign "w2"
// FUSED: colossal.adamw
// FUSED-NEXT: colossal.assign "w1"
// FUSED-NOT: grad.
// FUSED: %[[NORM:.+]] = colossal.sqrt
// FUSED: return %{{.+}}, %{{.+}}, %[[NORM]], %{{.+}}
func.func @main(%x: tensor<4x3xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w1 = colossal.weight "w1" {trainable} : tensor<3x3xf32>
  %w2 = colossal.weight "w2" {trainable} : tensor<3x3xf32>
  %h = colossal.matmul %x, %w1 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %y = colossal.matmul %h, %w2 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %l = colossal.reduce_sum %y {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<4x3xf32>) -> tensor<f32>
  return %l : tensor<f32>
}
