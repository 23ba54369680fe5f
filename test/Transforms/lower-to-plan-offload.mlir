// RUN: colossal-opt %s --split-input-file '--colossal-lower-to-plan=offload-optimizer=true cross-step-updates=false' | FileCheck %s
// Updates across the step boundary (the default): lower-to-plan-cross-step.mlir.
// Without offload-optimizer nothing changes: one stream, no events.
// RUN: colossal-opt %s --split-input-file --colossal-lower-to-plan | FileCheck %s --check-prefix=DEVICE
// DEVICE-LABEL: func.func @train_step()
// DEVICE-SAME: cplan.num_events = 0 : i64, cplan.num_streams = 1 : i64}
// DEVICE-NOT: cplan.event
// DEVICE: cplan.kernel "adamw" {{.*}} stream(0)
// DEVICE-NOT: cplan.event
// DEVICE-NOT: stream(3)

// ZeRO-Offload on the host stream: each update's gradient (and lr, step)
// goes down on the D2H stream 2 behind a stream-0 record, the AdamW runs on
// the host stream 3 after waiting for that copy, and records; stream 0 waits
// for the previous gradient copy before issuing the next one, and for the
// host stream only at the program's end (the masters' next reader is the
// next step's fetch), so the updates overlap the rest of the step. Streams
// up to the host stream are declared; events: 2 per fetch, 3 per update.
// Each weight is fetched by an H2D copy on stream 1 behind a stream-0
// record; stream 0 waits for it right before the first use. The copies'
// predicted latency (15 us) outlasts these tiny matmuls, so both are
// issued at the program's start, in first-use order.
// CHECK-LABEL: func.func @train_step()
// CHECK-SAME: cplan.num_events = 10 : i64, cplan.num_streams = 4 : i64, cplan.stream_kinds = ["compute", "copy", "copy", "host"]
// CHECK: cplan.bind weight "w1" %[[W1:[0-9]+]]
// CHECK: %[[D1B:[0-9]+]] = cplan.buffer.alloc device size(36) align(64) {colossal.weight_fetch}
// CHECK-NEXT: %[[D1:[0-9]+]] = cplan.view %[[D1B]]
// CHECK: cplan.bind weight "w2" %[[W2:[0-9]+]]
// CHECK: %[[D2B:[0-9]+]] = cplan.buffer.alloc device size(36) align(64) {colossal.weight_fetch}
// CHECK-NEXT: %[[D2:[0-9]+]] = cplan.view %[[D2B]]
// CHECK-NOT: cplan.kernel
// CHECK: cplan.event.record [[R1:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[R1]] stream(1)
// CHECK-NEXT: cplan.copy %[[W1]] to %[[D1]] stream(1)
// CHECK-NEXT: cplan.event.record [[F1:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.event.record [[R2:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[R2]] stream(1)
// CHECK-NEXT: cplan.copy %[[W2]] to %[[D2]] stream(1)
// CHECK-NEXT: cplan.event.record [[F2:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.event.wait [[F1]] stream(0)
// CHECK-NEXT: cplan.kernel "matmul" ins(%{{[0-9]+}}, %[[D1]] :
// CHECK-NOT: cplan.kernel
// CHECK: cplan.event.wait [[F2]] stream(0)
// CHECK-NEXT: cplan.kernel "matmul" ins(%{{[0-9]+}}, %[[D2]] :
// CHECK: cplan.kernel "matmul" ins({{.*}} : memref<4x3xf32>, memref<4x3xf32>) outs(%[[DW2:[0-9]+]] : memref<3x3xf32>) {{.*}} stream(0)
// The first update: no earlier copy to wait for.
// CHECK-NOT: cplan.event.wait {{[0-9]+}} stream(0)
// CHECK: cplan.event.record [[I2:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[I2]] stream(2)
// CHECK: cplan.copy %[[DW2]] to %[[HG2:[0-9]+]] stream(2)
// CHECK: cplan.copy {{.*}} stream(2) : memref<f32>
// CHECK: cplan.copy {{.*}} stream(2) : memref<i64>
// CHECK-NEXT: cplan.event.record [[C2:[0-9]+]] stream(2)
// CHECK-NEXT: cplan.event.wait [[C2]] stream(3)
// CHECK-NEXT: cplan.kernel "adamw" ins(%[[W2]], %[[HG2]], {{.*}} outs(%[[W2]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U2:[0-9]+]] stream(3)
// The second: stream 0 first waits for the first gradient copy.
// CHECK: cplan.kernel "matmul" {{.*}} stream(0)
// CHECK-NOT: cplan.kernel
// CHECK: cplan.event.wait [[C2]] stream(0)
// CHECK-NEXT: cplan.event.record [[I1:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[I1]] stream(2)
// CHECK: cplan.event.record [[C1:[0-9]+]] stream(2)
// CHECK-NEXT: cplan.event.wait [[C1]] stream(3)
// CHECK-NEXT: cplan.kernel "adamw" ins(%[[W1]], {{.*}} outs(%[[W1]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U1:[0-9]+]] stream(3)
// Compute after the updates does not wait for them.
// CHECK-NOT: cplan.event.wait
// CHECK: cplan.kernel "add" {{.*}} stream(0)
// CHECK-NOT: cplan.event.wait
// CHECK: cplan.bind output "lr"
// The program's end: one wait for the host stream's last record (it has
// waited for the last copy).
// CHECK-NEXT: cplan.event.wait [[U1]] stream(0)
// CHECK-NEXT: return

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

// -----

// An update whose result stream 0 reads in the same program (the weight is
// read after its update, so the update cannot be written in place): the
// host-stream kernel writes new host buffers, and stream 0 waits for the
// host stream right before its first read of one (the identity into the
// master); nothing is left to wait for at the end. The fetch for `mul`
// stays ahead of that identity (it must read the old master).
// CHECK-LABEL: func.func @train_step()
// CHECK: cplan.kernel "adamw" ins(%[[W:[0-9]+]], {{.*}} outs(%[[NEW:[0-9]+]], {{.*}} stream(3)
// CHECK-NEXT: cplan.event.record [[U:[0-9]+]] stream(3)
// CHECK-NOT: cplan.kernel
// CHECK: cplan.copy %[[W]] to %[[D:[0-9]+]] stream(1)
// CHECK-NOT: cplan.kernel
// CHECK: cplan.event.wait [[U]] stream(0)
// CHECK: cplan.kernel "identity" ins(%[[NEW]] : memref<3xf32>) outs(%[[W]] : memref<3xf32>) {{.*}} stream(0)
// CHECK: cplan.kernel "mul" ins(%[[D]], 
// CHECK-NOT: cplan.event.wait
// CHECK: return
func.func @train_step(%x: tensor<3xf32> {colossal.name = "x"}, %step: tensor<i64> {colossal.name = "__step"}) -> (tensor<3xf32> {colossal.name = "y"}) {
  %w = colossal.weight "w" {trainable} : tensor<3xf32>
  %lr = colossal.constant dense<1.000000e-03> : tensor<f32>
  %m = colossal.state "adam.m.w" : tensor<3xf32>
  %v = colossal.state "adam.v.w" : tensor<3xf32>
  %p, %nm, %nv = colossal.adamw %w, %x, %m, %v, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<f32>, tensor<i64>) -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>)
  colossal.assign "w", %p : tensor<3xf32>
  colossal.assign "adam.m.w", %nm : tensor<3xf32>
  colossal.assign "adam.v.w", %nv : tensor<3xf32>
  %y = colossal.mul %w, %x : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
  return %y : tensor<3xf32>
}

// -----

// A lead: the fetch of w, first read after a chain of 512x512 matmuls, is
// issued some matmuls ahead of that use (the copy's predicted time covered
// by their predicted compute), neither at the program's start nor right
// before the use.
// CHECK-LABEL: func.func @train_step()
// CHECK: cplan.kernel "matmul"
// CHECK-NEXT: cplan.buffer.alloc
// CHECK-NEXT: cplan.view
// CHECK: cplan.event.record [[I:[0-9]+]] stream(0)
// CHECK-NEXT: cplan.event.wait [[I]] stream(1)
// CHECK-NEXT: cplan.copy %{{[0-9]+}} to %[[D:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.event.record [[F:[0-9]+]] stream(1)
// CHECK-NEXT: cplan.kernel "matmul"
// CHECK: cplan.kernel "matmul"
// CHECK: cplan.event.wait [[F]] stream(0)
// CHECK-NEXT: cplan.kernel "matmul" ins(%{{[0-9]+}}, %[[D]] :
func.func @train_step(%x: tensor<512x512xf32> {colossal.name = "x"}, %step: tensor<i64> {colossal.name = "__step"}) -> (tensor<512x512xf32> {colossal.name = "y"}) {
  %w = colossal.weight "w" {trainable} : tensor<512x512xf32>
  %a1 = colossal.matmul %x, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a2 = colossal.matmul %a1, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a3 = colossal.matmul %a2, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a4 = colossal.matmul %a3, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a5 = colossal.matmul %a4, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a6 = colossal.matmul %a5, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a7 = colossal.matmul %a6, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a8 = colossal.matmul %a7, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a9 = colossal.matmul %a8, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %a10 = colossal.matmul %a9, %x : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %y = colossal.matmul %a10, %w : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %lr = colossal.constant dense<1.000000e-03> : tensor<f32>
  %m = colossal.state "adam.m.w" : tensor<512x512xf32>
  %v = colossal.state "adam.v.w" : tensor<512x512xf32>
  %p, %nm, %nv = colossal.adamw %w, %y, %m, %v, %lr, %step {beta1 = 9.000000e-01 : f64, beta2 = 0.999 : f64, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64} : (tensor<512x512xf32>, tensor<512x512xf32>, tensor<512x512xf32>, tensor<512x512xf32>, tensor<f32>, tensor<i64>) -> (tensor<512x512xf32>, tensor<512x512xf32>, tensor<512x512xf32>)
  colossal.assign "w", %p : tensor<512x512xf32>
  colossal.assign "adam.m.w", %nm : tensor<512x512xf32>
  colossal.assign "adam.v.w", %nv : tensor<512x512xf32>
  return %y : tensor<512x512xf32>
}
