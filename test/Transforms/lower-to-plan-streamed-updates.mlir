// RUN: colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true streamed-updates=w1' | FileCheck %s
// RUN: not colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true streamed-updates=nope' 2>&1 | FileCheck %s --check-prefix=BADNAME
// RUN: not colossal-opt %s '--colossal-lower-to-plan=offload-optimizer=true streamed-updates=w1 device-resident=w1' 2>&1 | FileCheck %s --check-prefix=BOTH
// BADNAME: error: streamed-updates names 'nope', which is not a weight of the graph
// BOTH: error: 'w1' is named both device-resident and streamed-updates

// An update streamed through the device (docs/planner.md, "Updates streamed
// through the device"): w1's master and moments stay in host memory, but
// its AdamW runs on stream 0 on device copies fetched on stream 1, and the
// three results go back over the host copies on stream 2. w2 is updated on
// the host stream as usual.
// CHECK-LABEL: func.func @train_step()
// CHECK: cplan.buffer.alloc host size(36)
// CHECK-NEXT: %[[W1:[0-9]+]] = cplan.view
// CHECK-NEXT: cplan.bind weight "w1" %[[W1]]
// The forward's fetch of w1, then the update's: master and both moments.
// CHECK: cplan.copy %[[W1]] to %{{[0-9]+}} stream(1)
// CHECK: cplan.copy %[[W1]] to %[[P:[0-9]+]] stream(1)
// CHECK: %[[M1:[0-9]+]] = cplan.view
// CHECK: cplan.copy %[[M1]] to %[[M:[0-9]+]] stream(1)
// CHECK: %[[V1:[0-9]+]] = cplan.view
// CHECK: cplan.copy %[[V1]] to %[[V:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.event.record [[UP:[0-9]+]] stream(1)
// CHECK: cplan.kernel "adamw" ins({{.*}}) outs({{.*}}) {{.*}} stream(3)
// CHECK: cplan.bind state "adam.m.w1" %[[M1]]
// CHECK-NEXT: cplan.bind state "adam.v.w1" %[[V1]]
// CHECK-NEXT: cplan.event.wait [[UP]] stream(0)
// CHECK-NEXT: cplan.kernel "adamw" ins(%[[P]], %{{[0-9]+}}, %[[M]], %[[V]], {{.*}} outs(%[[P]], %[[M]], %[[V]] : {{.*}} stream(0)
// CHECK-NEXT: cplan.event.record [[DONE:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[DONE]] stream(2)
// CHECK-NEXT: cplan.copy %[[P]] to %[[W1]] stream(2)
// CHECK-NEXT: cplan.copy %[[M]] to %[[M1]] stream(2)
// CHECK-NEXT: cplan.copy %[[V]] to %[[V1]] stream(2)
// CHECK-NEXT: cplan.event.record [[BACK:[0-9]+]] stream(2)
// Stream 0 waits for the write-back by the program's end (stream 2 is not
// carried across steps, so the next step's fetch reads the new master).
// CHECK: cplan.event.wait [[BACK]] stream(0)
// CHECK: return
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
