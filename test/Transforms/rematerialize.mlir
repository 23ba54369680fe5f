// RUN: colossal-opt %s --split-input-file --colossal-rematerialize="budget-bytes=4200 min-bytes=64 offload=true gemm-tflops=1e-6" | FileCheck %s

// The rates are the pass's defaults (an H200's): HBM 4.2e12 B/s, a 3 us
// kernel floor, 55e9 B/s each way over PCIe and 15 us per copy, except a
// matmul rate of 1e-6 TFLOP/s (1e6 FLOP/s) that makes any matmul slow. So
// an elementwise recompute costs the floor, 3 us, and parking 1024 bytes in
// host memory 2 x 1024 / 55e9 + 2 x 15 us = 30.04 us.

// %x = relu(%w) is written at 0 and read again at 3; the weight %w (1024)
// is live all along anyway. Live bytes: 0: w + x = 2048; 1, 2: w + x + t
// (2560) = 4608 > 4200; 3: w + x + u = 3072. Recomputing %x right before 3
// (3 us, below the 30.04 us of parking it) frees 1024 at 1 and 2: the peak
// falls to 3584, and 3 reads the new buffer.
// CHECK-LABEL: func.func @cheap
// CHECK-SAME: colossal.remat = {added_s = 3.000000e-06 : f64, buffers = 1 : i64, bytes = 1024 : i64}
func.func @cheap() {
  %w = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(2560) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  // CHECK: %[[W:.+]] = cplan.view {{.*}} : memref<256xf32>
  %vw = cplan.view %w[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<640xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.bind weight "w" %vw : memref<256xf32>
  // CHECK: cplan.kernel "relu" ins(%[[W]] : memref<256xf32>) outs(%[[X:.+]] : memref<256xf32>)
  // CHECK-NOT: colossal.recompute
  cplan.kernel "relu" ins(%vw : memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<640xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<640xf32>) outs(%vt : memref<640xf32>) params {} stream(0)
  // CHECK: %[[NEW:.+]] = cplan.buffer.alloc device size(1024) align(64) {colossal.recomputed}
  // CHECK-NEXT: %[[NV:.+]] = cplan.view %[[NEW]][0] : memref<256xf32>
  // CHECK-NEXT: cplan.kernel "relu" ins(%[[W]] : memref<256xf32>) outs(%[[NV]] : memref<256xf32>) params {} stream(0) {colossal.recompute}
  // CHECK-NEXT: %[[NV2:.+]] = cplan.view %[[NEW]][0] : memref<256xf32>
  // CHECK-NEXT: cplan.kernel "add" ins(%[[NV2]], %[[NV2]] : memref<256xf32>, memref<256xf32>)
  cplan.kernel "add" ins(%vx, %vx : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// Greedy by time per byte freed at the peak: %x (512) and %y (1024) both
// idle across the peak, both recomputed at the 3 us floor. Live bytes at 2
// and 3: wa (512) + wb (1024) + x + y + t (2048) = 5120. Without %y: 4096
// <= 4200, so %y (3 us / 1024 B) is taken first and %x (3 us / 512 B) is
// not needed. After: 4: wa + wb + x + y' + u (1024) = 4096; 5: 2560.
// CHECK-LABEL: func.func @per_byte
// CHECK-SAME: colossal.remat = {added_s = 3.000000e-06 : f64, buffers = 1 : i64, bytes = 1024 : i64}
func.func @per_byte() {
  %wa = cplan.buffer.alloc device size(512) align(64)
  %wb = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(512) align(64)
  %y = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(2048) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %v = cplan.buffer.alloc device size(512) align(64)
  %vwa = cplan.view %wa[0] : memref<128xf32>
  %vwb = cplan.view %wb[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<128xf32>
  %vy = cplan.view %y[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<512xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  %vv = cplan.view %v[0] : memref<128xf32>
  cplan.bind weight "wa" %vwa : memref<128xf32>
  cplan.bind weight "wb" %vwb : memref<256xf32>
  cplan.kernel "relu" ins(%vwa : memref<128xf32>) outs(%vx : memref<128xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vwb : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<512xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<512xf32>) outs(%vt : memref<512xf32>) params {} stream(0)
  // CHECK: cplan.buffer.alloc device size(1024) align(64) {colossal.recomputed}
  // CHECK: cplan.kernel "relu" {{.*}} : memref<256xf32>) {{.*}} {colossal.recompute}
  // CHECK-NEXT: cplan.view
  // CHECK-NEXT: cplan.kernel "add"
  cplan.kernel "add" ins(%vy, %vy : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  // CHECK-NOT: colossal.recompute
  cplan.kernel "add" ins(%vx, %vx : memref<128xf32>, memref<128xf32>) outs(%vv : memref<128xf32>) params {} stream(0)
  return
}

// -----

// Joint with offload: %x = matmul(16x4, 4x16) is 2 x 16 x 16 x 4 = 2048
// FLOP, 2 ms at 1e6 FLOP/s, against 30.04 us to park its 1024 bytes in
// host memory. It is left to colossal-offload-across-gaps (the
// rematerialize-alone.mlir test recomputes it when offload is off). Live at
// 1, 2: w1 + w2 (512) + x + t (3200) = 4736 > 4200.
// CHECK-LABEL: func.func @expensive
// CHECK-NOT: colossal.remat
// CHECK-NOT: colossal.recompute
func.func @expensive() {
  %w1 = cplan.buffer.alloc device size(256) align(64)
  %w2 = cplan.buffer.alloc device size(256) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %vw1 = cplan.view %w1[0] : memref<16x4xf32>
  %vw2 = cplan.view %w2[0] : memref<4x16xf32>
  %vx = cplan.view %x[0] : memref<16x16xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<16x16xf32>
  cplan.bind weight "w1" %vw1 : memref<16x4xf32>
  cplan.bind weight "w2" %vw2 : memref<4x16xf32>
  cplan.kernel "matmul" ins(%vw1, %vw2 : memref<16x4xf32>, memref<4x16xf32>) outs(%vx : memref<16x16xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vx : memref<16x16xf32>, memref<16x16xf32>) outs(%vu : memref<16x16xf32>) params {} stream(0)
  return
}

// -----

// The producer's input %a is overwritten at 2, between the producer (1) and
// the read after the gap (4): a recompute would not see the same bytes, so
// %x is kept although the peak (3: a + x + t = 4608) is over the budget.
// CHECK-LABEL: func.func @input_overwritten
// CHECK-NOT: colossal.recompute
func.func @input_overwritten() {
  %a = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(2560) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %va = cplan.view %a[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<640xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.kernel "fill" ins() outs(%va : memref<256xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%va : memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%va : memref<256xf32>) params {value = 2.0 : f64} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<640xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "add" ins(%vx, %va : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// Only kernels are recomputed: %x comes from a copy (a fetched host buffer),
// and %y is an output binding. Nothing changes; the budget check reports.
// CHECK-LABEL: func.func @nothing_recomputable
// CHECK-NOT: colossal.recompute
func.func @nothing_recomputable() {
  %h = cplan.buffer.alloc host size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %y = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(2560) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %vh = cplan.view %h[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vy = cplan.view %y[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<640xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.bind weight "h" %vh : memref<256xf32>
  cplan.bind output "y" %vy : memref<256xf32>
  cplan.copy %vh to %vx stream(0) : memref<256xf32>
  cplan.kernel "relu" ins(%vx : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<640xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<640xf32>) outs(%vt : memref<640xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vy : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// Under the budget already (peak 3072): nothing changes, no summary.
// CHECK-LABEL: func.func @fits
// CHECK-NOT: colossal.remat
// CHECK-NOT: colossal.recompute
func.func @fits() {
  %w = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(1024) align(64)
  %vw = cplan.view %w[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<256xf32>
  cplan.bind weight "w" %vw : memref<256xf32>
  cplan.kernel "relu" ins(%vw : memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<256xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<256xf32>) outs(%vt : memref<256xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vt : memref<256xf32>, memref<256xf32>) outs(%vt : memref<256xf32>) params {} stream(0)
  return
}

// -----

// An empty function must not crash.
// CHECK-LABEL: func.func @empty
func.func @empty() {
  return
}
