// RUN: colossal-opt %s --colossal-mixed-precision --colossal-autodiff --colossal-build-optimizer-step="fuse=true norm-into-update=true" 2>/dev/null | FileCheck %s
// RUN: colossal-opt %s --colossal-mixed-precision --colossal-autodiff --colossal-build-optimizer-step="fuse=true norm-into-update=true norm-into-update-only=w2" 2>/dev/null | FileCheck %s --check-prefix=ONLY
// RUN: colossal-opt %s --colossal-mixed-precision --colossal-autodiff --colossal-build-optimizer-step="fuse=true" 2>/dev/null | FileCheck %s --check-prefix=OFF
// RUN: not colossal-opt %s --colossal-autodiff --colossal-build-optimizer-step="fuse=true norm-into-update=true" --colossal-lower-to-plan="offload-optimizer=true" 2>&1 | FileCheck %s --check-prefix=HOST
// norm-into-update: each fused AdamW update is one adamw_norm on the raw
// gradient, bf16 here (mixed precision: the cast up to f32 is read
// through), divided by the count inside, its fourth result the weight's
// share of the gradient norm; no div, no reduce_sum_square.
// CHECK-LABEL: func.func @train_step(
// CHECK-NOT: colossal.reduce_sum_square
// CHECK: %[[P2:[a-z_0-9]+]], %{{[a-z_0-9]+}}, %{{[a-z_0-9]+}}, %[[S2:[a-z_0-9]+]] = colossal.adamw_norm %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} {{.*}} : (tensor<3x3xf32>, tensor<3x3xbf16>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>, tensor<f32>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>)
// CHECK-NEXT: colossal.assign "w2", %[[P2]]
// CHECK: %[[P1:[a-z_0-9]+]], %{{[a-z_0-9]+}}, %{{[a-z_0-9]+}}, %[[S1:[a-z_0-9]+]] = colossal.adamw_norm
// CHECK-NEXT: colossal.assign "w1", %[[P1]]
// CHECK-NOT: colossal.reduce_sum_square
// CHECK: colossal.add %[[S1]], %[[S2]]
// CHECK: colossal.sqrt
// Only w2 named (w1 is updated on the host): w1 keeps div,
// reduce_sum_square and adamw on the f32 gradient.
// ONLY-LABEL: func.func @train_step(
// ONLY: colossal.adamw_norm
// ONLY-NEXT: colossal.assign "w2"
// ONLY: colossal.div
// ONLY: colossal.reduce_sum_square
// ONLY: colossal.adamw {{.*}} : (tensor<3x3xf32>, tensor<3x3xf32>,
// ONLY-NEXT: colossal.assign "w1"
// An adamw_norm of a weight the lowering offloads is an error naming it:
// its sum of squares would be on the host, out of the device norm's reach.
// HOST: loc("w2"): 'colossal.adamw_norm' op updates an offloaded weight
// Off by default in the pass (the pipeline turns it on from the placement).
// OFF-NOT: colossal.adamw_norm
// OFF: colossal.reduce_sum_square
func.func @main(%x: tensor<4x3xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w1 = colossal.weight "w1" {trainable} : tensor<3x3xf32>
  %w2 = colossal.weight "w2" {trainable} : tensor<3x3xf32>
  %h = colossal.matmul %x, %w1 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %y = colossal.matmul %h, %w2 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %l = colossal.reduce_sum %y {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<4x3xf32>) -> tensor<f32>
  return %l : tensor<f32>
}
