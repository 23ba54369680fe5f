// RUN: colossal-opt %s --split-input-file --colossal-lower-to-plan | FileCheck %s

// Inputs, weights, kernels and outputs: one buffer and view per value, a
// binding for each name, one kernel per op with its attributes as params.
// CHECK-LABEL: func.func @main()
// CHECK-SAME: cplan.num_events = 0
// CHECK-SAME: cplan.num_streams = 1
func.func @main(%x: tensor<2x3xf32> {colossal.name = "x"}) -> (tensor<2x4xf32> {colossal.name = "y"}) {
  // 2 x 3 x 4 bytes = 24 bytes
  // CHECK: %[[XB:.+]] = cplan.buffer.alloc device size(24) align(64)
  // CHECK: %[[XV:.+]] = cplan.view %[[XB]][0] : memref<2x3xf32>
  // CHECK: cplan.bind input "x" %[[XV]]
  // CHECK: %[[WB:.+]] = cplan.buffer.alloc device size(48) align(64)
  // CHECK: %[[WV:.+]] = cplan.view %[[WB]][0] : memref<4x3xf32>
  // CHECK: cplan.bind weight "model.w" %[[WV]]
  %w = colossal.weight "model.w" : tensor<4x3xf32>
  // CHECK: %[[YV:.+]] = cplan.view %{{.+}}[0] : memref<2x4xf32>
  // CHECK: cplan.kernel "matmul" ins(%[[XV]], %[[WV]] : memref<2x3xf32>, memref<4x3xf32>) outs(%[[YV]] : memref<2x4xf32>) params {{.*}}transpose_b = 1 : i64} stream(0)
  %0 = colossal.matmul %x, %w {transpose_b = 1 : i64} : (tensor<2x3xf32>, tensor<4x3xf32>) -> tensor<2x4xf32>
  // CHECK: cplan.bind output "y" %[[YV]]
  // CHECK: return
  return %0 : tensor<2x4xf32>
}

// -----

// A reshape is a second view of its input's buffer: no copy, no kernel.
// CHECK-LABEL: func.func @reshape_aliases
func.func @reshape_aliases(%x: tensor<2x3xf32> {colossal.name = "x"}) -> (tensor<6xf32> {colossal.name = "y"}) {
  // CHECK: %[[B:.+]] = cplan.buffer.alloc device size(24)
  // CHECK: %[[R:.+]] = cplan.view %{{.+}}[0] : memref<2x3xf32>
  // CHECK: cplan.kernel "relu"
  %0 = colossal.relu %x : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK-NOT: cplan.kernel "reshape"
  // CHECK: %[[V:.+]] = cplan.view %{{.+}}[0] : memref<6xf32>
  %1 = colossal.reshape %0 : (tensor<2x3xf32>) -> tensor<6xf32>
  // CHECK: cplan.bind output "y" %[[V]]
  return %1 : tensor<6xf32>
}

// -----

// Small constants keep their bytes; large splats become fill kernels
// (256 float = 1024 bytes >= the 256-byte threshold).
// CHECK-LABEL: func.func @constants
func.func @constants(%x: tensor<256xf32> {colossal.name = "x"}) -> (tensor<256xf32> {colossal.name = "y"}) {
  // CHECK: cplan.bind constant "{{.*}}" %{{.+}} {value = dense<[1.000000e+00, 2.000000e+00]> : tensor<2xf32>}
  %c = colossal.constant dense<[1.0, 2.0]> : tensor<2xf32>
  // CHECK: cplan.kernel "fill" ins() outs(%{{.+}} : memref<256xf32>) params {value = 5.000000e-01 : f64}
  %s = colossal.constant dense<0.5> : tensor<256xf32>
  // CHECK-NOT: cplan.bind constant
  %0 = colossal.add %x, %s : (tensor<256xf32>, tensor<256xf32>) -> tensor<256xf32>
  return %0 : tensor<256xf32>
}

// -----

// A training step: micro_step and apply_step become one plan with a program
// marker each; the weight and each state are one buffer shared by both
// programs; updates are written in place after the last read; a zeroing
// fill writes straight into its state.
// CHECK-LABEL: func.func @train_step()
// CHECK: cplan.program "micro_step"
// CHECK: cplan.bind input "x" %{{.+}} {program = "micro_step"}
// CHECK: cplan.bind weight "model.w" %[[W:[0-9]+]] {export_name = "w", init = "ones", trainable}
// CHECK: cplan.bind state "grad.model.w" %[[G:[0-9]+]]
// The accumulation writes over the state it reads (an exact alias).
// CHECK: cplan.kernel "add" ins(%[[G]], %{{.+}} : memref<4xf32>, memref<4xf32>) outs(%[[G]] : memref<4xf32>)
// CHECK-NOT: "identity"
// CHECK: cplan.bind output "loss" %{{.+}} {program = "micro_step"}
// CHECK: cplan.program "apply_step"
// CHECK: cplan.kernel "sub" ins(%[[W]], %{{.+}} : memref<4xf32>, memref<4xf32>) outs(%[[W]] : memref<4xf32>)
// CHECK: cplan.kernel "fill" ins() outs(%[[G]] : memref<4xf32>) params {value = 0.000000e+00 : f64}
// CHECK-NOT: "identity"
// CHECK: return
func.func @micro_step(%x: tensor<4xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "model.w" {trainable} : tensor<4xf32>
  %p = colossal.mul %x, %w : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %l = colossal.reduce_sum %p {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<4xf32>) -> tensor<f32>
  %g = colossal.state "grad.model.w" : tensor<4xf32>
  %s = colossal.add %g, %x : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  colossal.assign "grad.model.w", %s : tensor<4xf32>
  return %l : tensor<f32>
}
func.func @apply_step(%lr: tensor<f32> {colossal.name = "__count_total"}) -> (tensor<f32> {colossal.name = "lr"}) {
  %w = colossal.weight "model.w" {trainable} : tensor<4xf32>
  %g = colossal.state "grad.model.w" : tensor<4xf32>
  %d = colossal.mul %g, %lr : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %n = colossal.sub %w, %d : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  colossal.assign "model.w", %n : tensor<4xf32>
  %z = colossal.fill {value = 0.0 : f64} : () -> tensor<4xf32>
  colossal.assign "grad.model.w", %z : tensor<4xf32>
  return %lr : tensor<f32>
}
