// RUN: colossal-opt %s --colossal-lower-to-plan=offload-optimizer=true | FileCheck %s
// RUN: colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true cross-step-updates=false' | FileCheck %s --check-prefix=JOINED

// Updates across the step boundary (docs/planner.md). Three offloaded f32
// weights, 4096 x 4096, in a chain; their gradients come w3, w2, w1. With
// the built-in profile's rates (f32 GEMMs of 2048 rows: ~1.5 ms each; a
// 64 MiB copy: ~1.2 ms; a host AdamW over 16M parameters: ~4 ms) the host
// is the bottleneck. In the gradients' order the next step's forward could
// start only after w1's update, the last; with w2 and w1 as the step's
// tail, in the forward's order, it starts after w1's and runs its first
// matmul under w2's update (the steady state the cost model predicts:
// 18.6 ms a step against 20.0 in the gradients' order; a tail of all
// three: 20.0, as w3's gradient is then waited for last). Nothing waits
// for the host stream at the end; each weight's fetch waits for its
// update (the previous step's: the record comes later in plan order), and
// the plan carries the host stream.
// CHECK-LABEL: func.func @train_step()
// CHECK-SAME: cplan.carried_streams = [3]
// CHECK: cplan.bind weight "w1" %[[W1:[0-9]+]]
// CHECK: cplan.bind weight "w2" %[[W2:[0-9]+]]
// CHECK: cplan.bind weight "w3" %[[W3:[0-9]+]]
// CHECK: cplan.event.wait {{[0-9]+}} stream(1)
// CHECK-NEXT: cplan.event.wait [[U1:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.copy %[[W1]] to %{{[0-9]+}} stream(1)
// CHECK: cplan.event.wait {{[0-9]+}} stream(1)
// CHECK-NEXT: cplan.event.wait [[U2:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.copy %[[W2]] to %{{[0-9]+}} stream(1)
// CHECK: cplan.event.wait {{[0-9]+}} stream(1)
// CHECK-NEXT: cplan.event.wait [[U3:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.copy %[[W3]] to %{{[0-9]+}} stream(1)
// w3's update stays where its gradient arrives, before the next matmul.
// CHECK: cplan.kernel "adamw" ins(%[[W3]], {{.*}} outs(%[[W3]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U3]] stream(3)
// CHECK-NOT: stream(3)
// CHECK: cplan.kernel "matmul"
// CHECK-NOT: stream(3)
// CHECK: cplan.kernel "matmul"
// The end: stream 0 waits for the last gradient copy (stream 2), not the
// host; then the tail, w1 and w2 in the forward's order.
// CHECK-NOT: cplan.kernel {{.*}} stream(0)
// CHECK: cplan.bind output "loss"
// CHECK-NEXT: cplan.event.wait {{[0-9]+}} stream(0)
// CHECK-NEXT: cplan.event.wait {{[0-9]+}} stream(3)
// CHECK-NEXT: cplan.kernel "adamw" ins(%[[W1]], {{.*}} outs(%[[W1]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U1]] stream(3)
// CHECK-NEXT: cplan.event.wait {{[0-9]+}} stream(3)
// CHECK-NEXT: cplan.kernel "adamw" ins(%[[W2]], {{.*}} outs(%[[W2]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U2]] stream(3)
// CHECK-NEXT: return

// Joined (cross-step-updates=false): the gradients' order, stream 0 waits
// for the last update at the end, the fetches wait for nothing but their
// issue, and no stream is carried.
// JOINED-LABEL: func.func @train_step()
// JOINED-NOT: cplan.carried_streams
// JOINED: cplan.bind weight "w1" %[[W1:[0-9]+]]
// JOINED: cplan.event.wait [[I1:[0-9]+]] stream(1)
// JOINED-NEXT: cplan.copy %[[W1]] to %{{[0-9]+}} stream(1)
// JOINED: cplan.kernel "adamw" ins(%[[W3:[0-9]+]], {{.*}} stream(3)
// JOINED: cplan.kernel "adamw" ins(%[[W2:[0-9]+]], {{.*}} stream(3)
// JOINED: cplan.kernel "adamw" ins(%[[W1]], {{.*}} stream(3)
// JOINED-NEXT: cplan.event.record [[U1:[0-9]+]] stream(3)
// JOINED: cplan.event.wait [[U1]] stream(0)
// JOINED-NEXT: return
func.func @train_step(%x: tensor<2048x4096xf32> {colossal.name = "x"}, %step: tensor<i64> {colossal.name = "__step"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w1 = colossal.weight "w1" {trainable} : tensor<4096x4096xf32>
  %w2 = colossal.weight "w2" {trainable} : tensor<4096x4096xf32>
  %w3 = colossal.weight "w3" {trainable} : tensor<4096x4096xf32>
  %h1 = colossal.matmul %x, %w1 : (tensor<2048x4096xf32>, tensor<4096x4096xf32>) -> tensor<2048x4096xf32>
  %h2 = colossal.matmul %h1, %w2 : (tensor<2048x4096xf32>, tensor<4096x4096xf32>) -> tensor<2048x4096xf32>
  %y = colossal.matmul %h2, %w3 : (tensor<2048x4096xf32>, tensor<4096x4096xf32>) -> tensor<2048x4096xf32>
  %l = colossal.reduce_sum %y {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<2048x4096xf32>) -> tensor<f32>
  %lr = colossal.constant dense<1.000000e-03> : tensor<f32>
  %dw3 = colossal.matmul %h2, %y {transpose_a = 1 : i64} : (tensor<2048x4096xf32>, tensor<2048x4096xf32>) -> tensor<4096x4096xf32>
  %m3 = colossal.state "adam.m.w3" : tensor<4096x4096xf32>
  %v3 = colossal.state "adam.v.w3" : tensor<4096x4096xf32>
  %p3, %nm3, %nv3 = colossal.adamw %w3, %dw3, %m3, %v3, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<f32>, tensor<i64>) -> (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>)
  colossal.assign "w3", %p3 : tensor<4096x4096xf32>
  colossal.assign "adam.m.w3", %nm3 : tensor<4096x4096xf32>
  colossal.assign "adam.v.w3", %nv3 : tensor<4096x4096xf32>
  %dw2 = colossal.matmul %h1, %h2 {transpose_a = 1 : i64} : (tensor<2048x4096xf32>, tensor<2048x4096xf32>) -> tensor<4096x4096xf32>
  %m2 = colossal.state "adam.m.w2" : tensor<4096x4096xf32>
  %v2 = colossal.state "adam.v.w2" : tensor<4096x4096xf32>
  %p2, %nm2, %nv2 = colossal.adamw %w2, %dw2, %m2, %v2, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<f32>, tensor<i64>) -> (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>)
  colossal.assign "w2", %p2 : tensor<4096x4096xf32>
  colossal.assign "adam.m.w2", %nm2 : tensor<4096x4096xf32>
  colossal.assign "adam.v.w2", %nv2 : tensor<4096x4096xf32>
  %dw1 = colossal.matmul %x, %h1 {transpose_a = 1 : i64} : (tensor<2048x4096xf32>, tensor<2048x4096xf32>) -> tensor<4096x4096xf32>
  %m1 = colossal.state "adam.m.w1" : tensor<4096x4096xf32>
  %v1 = colossal.state "adam.v.w1" : tensor<4096x4096xf32>
  %p1, %nm1, %nv1 = colossal.adamw %w1, %dw1, %m1, %v1, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<f32>, tensor<i64>) -> (tensor<4096x4096xf32>, tensor<4096x4096xf32>, tensor<4096x4096xf32>)
  colossal.assign "w1", %p1 : tensor<4096x4096xf32>
  colossal.assign "adam.m.w1", %nm1 : tensor<4096x4096xf32>
  colossal.assign "adam.v.w1", %nv1 : tensor<4096x4096xf32>
  return %l : tensor<f32>
}
