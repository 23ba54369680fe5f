// RUN: colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true device-resident=w1' | FileCheck %s --check-prefix=SHARE
// RUN: not colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true device-resident=nope' 2>&1 | FileCheck %s --check-prefix=BADNAME
// BADNAME: error: device-resident names 'nope', which is not a weight of the graph

// A device-resident share of the optimizer state under offload-optimizer
// (the budget's share, docs/planner.md).
// The share: w1 keeps master and moments on the device (no fetch: stream 0
// computes with the master), and its AdamW runs on stream 0 in place, with
// no copy; w2 is offloaded as above.
// SHARE-LABEL: func.func @train_step()
// SHARE-SAME: cplan.num_events = 5 : i64
// SHARE: %[[B1:[0-9]+]] = cplan.buffer.alloc device size(36)
// SHARE-NEXT: %[[W1:[0-9]+]] = cplan.view %[[B1]]
// SHARE-NEXT: cplan.bind weight "w1" %[[W1]]
// SHARE-NEXT: cplan.buffer.alloc host size(36)
// SHARE-NEXT: %[[W2:[0-9]+]] = cplan.view
// SHARE-NEXT: cplan.bind weight "w2" %[[W2]]
// SHARE: cplan.copy %[[W2]] to %[[D2:[0-9]+]] stream(1)
// SHARE-NOT: cplan.copy %[[W1]]
// SHARE: cplan.kernel "matmul" ins(%{{[0-9]+}}, %[[W1]] : {{.*}} stream(0)
// SHARE: cplan.kernel "matmul" ins(%{{[0-9]+}}, %[[D2]] : {{.*}} stream(0)
// SHARE: cplan.kernel "adamw" ins(%[[W2]], {{.*}} stream(3)
// SHARE-NEXT: cplan.event.record [[U2:[0-9]+]] stream(3)
// SHARE: cplan.bind state "adam.m.w1" %[[M1:[0-9]+]]
// SHARE-NEXT: cplan.buffer.alloc device
// SHARE-NEXT: %[[V1:[0-9]+]] = cplan.view
// SHARE-NEXT: cplan.bind state "adam.v.w1" %[[V1]]
// SHARE-NOT: cplan.copy
// SHARE: cplan.kernel "adamw" ins(%[[W1]], %{{[0-9]+}}, %[[M1]], %[[V1]], {{.*}} outs(%[[W1]], %[[M1]], %[[V1]] : {{.*}} stream(0)
// SHARE-NOT: stream(2)
// w2's host update runs on under the next step (w2's fetch waits for it):
// stream 0 waits for its copies at the end, not for it.
// SHARE-NOT: cplan.event.wait [[U2]] stream(0)
// SHARE: return
func.func @train_step(%x: tensor<4x3xf32> {colossal.name = "x"}, %step: tensor<i64> {colossal.name = "__step"}) -> (tensor<f32> {colossal.name = "loss"}, tensor<f32> {colossal.name = "lr"}) {
  %w1 = colossal.weight "w1" {trainable} : tensor<3x3xf32>
  %w2 = colossal.weight "w2" {trainable} : tensor<3x3xf32>
  %h = colossal.matmul %x, %w1 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %y = colossal.matmul %h, %w2 : (tensor<4x3xf32>, tensor<3x3xf32>) -> tensor<4x3xf32>
  %l = colossal.reduce_sum %y {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<4x3xf32>) -> tensor<f32>
  %lr = colossal.constant dense<1.000000e-03> : tensor<f32>
  %dw2 = colossal.matmul %h, %y {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
  %m2 = colossal.state "adam.m.w2" : tensor<3x3xf32>
  %v2 = colossal.state "adam.v.w2" : tensor<3x3xf32>
  %p2, %nm2, %nv2 = colossal.adamw %w2, %dw2, %m2, %v2, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>)
  colossal.assign "w2", %p2 : tensor<3x3xf32>
  colossal.assign "adam.m.w2", %nm2 : tensor<3x3xf32>
  colossal.assign "adam.v.w2", %nv2 : tensor<3x3xf32>
  %dw1 = colossal.matmul %x, %h {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<3x3xf32>
  %m1 = colossal.state "adam.m.w1" : tensor<3x3xf32>
  %v1 = colossal.state "adam.v.w1" : tensor<3x3xf32>
  %p1, %nm1, %nv1 = colossal.adamw %w1, %dw1, %m1, %v1, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3x3xf32>, tensor<3x3xf32>, tensor<3x3xf32>)
  colossal.assign "w1", %p1 : tensor<3x3xf32>
  colossal.assign "adam.m.w1", %nm1 : tensor<3x3xf32>
  colossal.assign "adam.v.w1", %nv1 : tensor<3x3xf32>
  %z = colossal.add %l, %l : (tensor<f32>, tensor<f32>) -> tensor<f32>
  return %z, %lr : tensor<f32>, tensor<f32>
}
