// RUN: colossal-opt %s --split-input-file --colossal-offload-across-gaps="budget-bytes=300 min-bytes=64" | FileCheck %s

// %a is written at 0 and read again at 4; %b and %c live at 1..3, so the
// peak (3 x 128 = 384 > 300) is at 2 and 3. %a is the largest buffer idle
// across it. The offload runs on the D2H stream 2 behind an event recorded
// on stream 0 after the write; stream 0 waits for it before the first
// over-budget instruction (the relu at 2), where %a's device bytes die. The
// prefetch is issued on the H2D stream 1 after the last over-budget
// instruction (3): 128 B / 55 GB/s + 15 us is more than the zero compute
// left before the read, so its lead is shortened (marked). Stream 0 waits
// for it right before the read, which uses the fetched copy; the peak falls
// to 256 (%b, %c). The parked and fetched buffers are never parked again.
// CHECK-LABEL: func.func @park
// CHECK-SAME: cplan.num_events = 4 : i64, cplan.num_streams = 3 : i64, cplan.stream_kinds = ["compute", "copy", "copy"]
func.func @park() {
  // CHECK: %[[A:.+]] = cplan.buffer.alloc device size(128) align(64) {colossal.parked}
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
  // CHECK-NEXT: cplan.event.record [[USED:[0-9]+]] stream(0)
  // CHECK-NEXT: cplan.event.wait [[USED]] stream(2)
  // CHECK-NEXT: cplan.copy %[[AV]] to %[[HV]] stream(2) : memref<128xui8>
  // CHECK-NEXT: cplan.event.record [[OFF:[0-9]+]] stream(2)
  // CHECK-NEXT: cplan.kernel "fill"
  // CHECK-NEXT: cplan.event.wait [[OFF]] stream(0)
  // CHECK-NEXT: cplan.kernel "relu"
  cplan.kernel "fill" ins() outs(%vb : memref<32xf32>) params {value = 2.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vb : memref<32xf32>) outs(%vc : memref<32xf32>) params {} stream(0)
  // CHECK-NEXT: cplan.kernel "relu"
  cplan.kernel "relu" ins(%vc : memref<32xf32>) outs(%vb : memref<32xf32>) params {} stream(0)
  // CHECK-NEXT: %[[DEV:.+]] = cplan.buffer.alloc device size(128) align(64) {colossal.fetched, colossal.lead_shortened}
  // CHECK-NEXT: %[[DV:.+]] = cplan.view %[[DEV]][0] : memref<128xui8>
  // CHECK-NEXT: cplan.event.record [[ISSUE:[0-9]+]] stream(0)
  // CHECK-NEXT: cplan.event.wait [[ISSUE]] stream(1)
  // CHECK-NEXT: cplan.copy %[[HV]] to %[[DV]] stream(1) : memref<128xui8>
  // CHECK-NEXT: cplan.event.record [[FETCHED:[0-9]+]] stream(1)
  // CHECK-NEXT: cplan.event.wait [[FETCHED]] stream(0)
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
