// RUN: colossal-opt %s --split-input-file --colossal-offload-across-gaps="budget-bytes=300 min-bytes=64" | FileCheck %s

// %a is written at 0 and read again at 4; %b and %c live at 1..3, so the
// peak (3 x 128 = 384 > 300) is at 2 and 3. %a is the largest buffer idle
// across it: it is copied to the host right after its write and back right
// before the read at 4, which then uses the fetched copy; the peak falls to
// 256 (%b, %c). The fetched copy is marked and never parked again.
// CHECK-LABEL: func.func @park
func.func @park() {
  // CHECK: %[[A:.+]] = cplan.buffer.alloc device size(128)
  %a = cplan.buffer.alloc device size(128) align(64)
  %b = cplan.buffer.alloc device size(128) align(64)
  %c = cplan.buffer.alloc device size(128) align(64)
  %va = cplan.view %a[0] : memref<32xf32>
  %vb = cplan.view %b[0] : memref<32xf32>
  %vc = cplan.view %c[0] : memref<32xf32>
  // CHECK: cplan.kernel "fill" {{.*}}params {value = 1.000000e+00 : f64}
  cplan.kernel "fill" ins() outs(%va : memref<32xf32>) params {value = 1.0 : f64} stream(0)
  // CHECK-NEXT: %[[HOST:.+]] = cplan.buffer.alloc host size(128) align(64)
  // CHECK-NEXT: %[[HV:.+]] = cplan.view %[[HOST]][0] : memref<128xui8>
  // CHECK-NEXT: %[[AV:.+]] = cplan.view %[[A]][0] : memref<128xui8>
  // CHECK-NEXT: cplan.copy %[[AV]] to %[[HV]] stream(0) : memref<128xui8>
  cplan.kernel "fill" ins() outs(%vb : memref<32xf32>) params {value = 2.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vb : memref<32xf32>) outs(%vc : memref<32xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vc : memref<32xf32>) outs(%vb : memref<32xf32>) params {} stream(0)
  // CHECK: %[[DEV:.+]] = cplan.buffer.alloc device size(128) align(64) {colossal.fetched}
  // CHECK-NEXT: %[[DV:.+]] = cplan.view %[[DEV]][0] : memref<128xui8>
  // CHECK-NEXT: cplan.copy %[[HV]] to %[[DV]] stream(0) : memref<128xui8>
  // CHECK-NEXT: %[[NEWA:.+]] = cplan.view %[[DEV]][0] : memref<32xf32>
  // CHECK-NEXT: cplan.kernel "relu" ins(%[[NEWA]] : memref<32xf32>) outs(%[[NEWA]] : memref<32xf32>)
  // CHECK-NOT: cplan.copy
  cplan.kernel "relu" ins(%va : memref<32xf32>) outs(%va : memref<32xf32>) params {} stream(0)
  return
}

// -----

// Under the budget already: nothing changes.
// CHECK-LABEL: func.func @fits
// CHECK-NOT: cplan.copy
func.func @fits() {
  %a = cplan.buffer.alloc device size(128) align(64)
  %va = cplan.view %a[0] : memref<32xf32>
  cplan.kernel "fill" ins() outs(%va : memref<32xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%va : memref<32xf32>) outs(%va : memref<32xf32>) params {} stream(0)
  return
}

// -----

// Bound buffers (inputs, weights, states, outputs) are never parked, even
// when over budget; the budget check reports what remains.
// CHECK-LABEL: func.func @pinned
// CHECK-NOT: cplan.copy
func.func @pinned() {
  %a = cplan.buffer.alloc device size(512) align(64)
  %va = cplan.view %a[0] : memref<128xf32>
  cplan.bind weight "w" %va : memref<128xf32>
  cplan.kernel "relu" ins(%va : memref<128xf32>) outs(%va : memref<128xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%va : memref<128xf32>) outs(%va : memref<128xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%va : memref<128xf32>) outs(%va : memref<128xf32>) params {} stream(0)
  return
}
