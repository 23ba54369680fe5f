// RUN: colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true streamed-updates=w1,w2,w3' | FileCheck %s

// Updates streamed through the device hold their device copies until their
// write-back: at most two at once. Before the third streamed update, stream
// 0 waits for the first one's write-back on stream 2 (docs/planner.md,
// "Updates streamed through the device").
// CHECK-LABEL: func.func @train_step()
// CHECK: cplan.kernel "adamw" {{.*}} stream(0)
// CHECK-NEXT: cplan.event.record [[D1:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[D1]] stream(2)
// CHECK-COUNT-3: cplan.copy {{.*}} stream(2)
// CHECK-NEXT: cplan.event.record [[W1:[0-9]+]] stream(2)
// CHECK-NOT: cplan.event.wait [[W1]] stream(0)
// CHECK: cplan.kernel "adamw" {{.*}} stream(0)
// CHECK-NOT: cplan.event.wait [[W1]] stream(0)
// CHECK: cplan.event.record [[W2:[0-9]+]] stream(2)
// The third: w1's gradient, then the wait, then its update.
// CHECK: cplan.kernel "matmul"
// CHECK-NOT: cplan.kernel
// CHECK: cplan.event.wait [[W1]] stream(0)
// CHECK-NOT: cplan.kernel
// CHECK: cplan.kernel "adamw" {{.*}} stream(0)
// CHECK: cplan.event.record [[W3:[0-9]+]] stream(2)
// The program's end waits for the last write-back (stream 2 runs in
// order, so it covers the second's).
// CHECK: cplan.event.wait [[W3]] stream(0)
// CHECK: return
func.func @train_step(%x: tensor<4x3xf32> {colossal.name = "x"}, %step: tensor<i64> {colossal.name = "__step"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w1 = colossal.weight "w1" {trainable} : tensor<3x3xf32>
  %w2 = colossal.weight "w2" {trainable} : tensor<3x3xf32>
  %w3 = colossal.weight "w3" {trainable} : tensor<3x3xf32>
  %h1 = colossal.matmul %x, %w1 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %h2 = colossal.matmul %h1, %w2 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %y = colossal.matmul %h2, %w3 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %l = colossal.reduce_sum %y {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<4x3xf32>) -> tensor<f32>
  %lr = colossal.constant dense<1.000000e-03> : tensor<f32>
  %dw3 = colossal.matmul %h2, %y {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
  %m3 = colossal.state "adam.m.w3" : tensor<3x3xf32>
  %v3 = colossal.state "adam.v.w3" : tensor<3x3xf32>
  %p3, %nm3, %nv3 = colossal.adamw %w3, %dw3, %m3, %v3, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>)
  colossal.assign "w3", %p3 : tensor<3x3xf32>
  colossal.assign "adam.m.w3", %nm3 : tensor<3x3xf32>
  colossal.assign "adam.v.w3", %nv3 : tensor<3x3xf32>
  %dw2 = colossal.matmul %h1, %h2 {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
  %m2 = colossal.state "adam.m.w2" : tensor<3x3xf32>
  %v2 = colossal.state "adam.v.w2" : tensor<3x3xf32>
  %p2, %nm2, %nv2 = colossal.adamw %w2, %dw2, %m2, %v2, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>)
  colossal.assign "w2", %p2 : tensor<3x3xf32>
  colossal.assign "adam.m.w2", %nm2 : tensor<3x3xf32>
  colossal.assign "adam.v.w2", %nv2 : tensor<3x3xf32>
  %dw1 = colossal.matmul %x, %h1 {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
  %m1 = colossal.state "adam.m.w1" : tensor<3x3xf32>
  %v1 = colossal.state "adam.v.w1" : tensor<3x3xf32>
  %p1, %nm1, %nv1 = colossal.adamw %w1, %dw1, %m1, %v1, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>)
  colossal.assign "w1", %p1 : tensor<3x3xf32>
  colossal.assign "adam.m.w1", %nm1 : tensor<3x3xf32>
  colossal.assign "adam.v.w1", %nv1 : tensor<3x3xf32>
  return %l : tensor<f32>
}
