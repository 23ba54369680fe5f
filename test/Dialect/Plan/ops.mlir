// RUN: colossal-opt %s | colossal-opt | FileCheck %s

// Every plan op prints and parses back unchanged.

// CHECK-LABEL: func.func @plan
func.func @plan() attributes {cplan.num_streams = 2 : i64, cplan.num_events = 1 : i64} {
  // CHECK: %[[B:.+]] = cplan.buffer.alloc device size(64) align(64) live([0, 3]) offset(128)
  %b = cplan.buffer.alloc device size(64) align(64) live([0, 3]) offset(128)
  // CHECK: %[[H:.+]] = cplan.buffer.alloc host size(64) align(64)
  %h = cplan.buffer.alloc host size(64) align(64)
  // CHECK: %[[V:.+]] = cplan.view %[[B]][0] : memref<4x4xf32>
  %v = cplan.view %b[0] : memref<4x4xf32>
  %w = cplan.view %h[0] : memref<4x4xf32>
  // CHECK: cplan.bind input "x" %[[V]] : memref<4x4xf32>
  cplan.bind input "x" %v : memref<4x4xf32>
  // CHECK: cplan.bind constant "c" %{{.*}} {value = dense<1.000000e+00> : tensor<4x4xf32>} : memref<4x4xf32>
  cplan.bind constant "c" %w {value = dense<1.0> : tensor<4x4xf32>} : memref<4x4xf32>
  // CHECK: cplan.kernel "relu" ins(%[[V]] : memref<4x4xf32>) outs(%{{.*}} : memref<4x4xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%v : memref<4x4xf32>) outs(%w : memref<4x4xf32>) params {} stream(0)
  // CHECK: cplan.kernel "fill" ins() outs(%{{.*}} : memref<4x4xf32>) params {value = 0.000000e+00 : f64} stream(0)
  cplan.kernel "fill" ins() outs(%w : memref<4x4xf32>) params {value = 0.0 : f64} stream(0)
  // CHECK: cplan.copy %[[V]] to %{{.*}} stream(1) : memref<4x4xf32>
  cplan.copy %v to %w stream(1) : memref<4x4xf32>
  // CHECK: cplan.event.record 0 stream(1)
  cplan.event.record 0 stream(1)
  // CHECK: cplan.event.wait 0 stream(0)
  cplan.event.wait 0 stream(0)
  // CHECK: cplan.bind output "y" %{{.*}} : memref<4x4xf32>
  cplan.bind output "y" %w : memref<4x4xf32>
  return
}
