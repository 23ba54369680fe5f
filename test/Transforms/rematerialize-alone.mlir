// RUN: colossal-opt %s --split-input-file --colossal-rematerialize="budget-bytes=4200 min-bytes=64 gemm-tflops=1e-6 max-chain=1" | FileCheck %s

// Without offload (offload=false, as under --policy cuda) nothing else can
// cut the peak, so a slow recompute is still taken: the matmul of
// rematerialize.mlir's @expensive (2048 FLOP at 1e6 FLOP/s = 2 ms, slower
// than the 30.04 us of parking its 1024 bytes) is recomputed. Live at 1, 2:
// w1 + w2 (512) + x (1024) + t (3200) = 4736 > 4200; after: 3712.
// CHECK-LABEL: func.func @expensive_alone
// CHECK-SAME: colossal.remat = {added_s = 2.048000e-03 : f64, buffers = 1 : i64, bytes = 1024 : i64}
// CHECK: cplan.kernel "relu"
// CHECK-NEXT: cplan.buffer.alloc device size(1024) align(64) {colossal.recomputed}
// CHECK-NEXT: cplan.view
// CHECK-NEXT: cplan.kernel "matmul" {{.*}} {colossal.recompute}
// CHECK-NEXT: cplan.view
// CHECK-NEXT: cplan.kernel "add"
func.func @expensive_alone() {
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

// An input that would have died is kept live until the recompute, and that
// is charged: %x = relu(%a), %a (1024) last read at 1. Live at 2, 3: a is
// dead, x + t (2560) + ... Recomputing %x before 4 would keep %a alive over
// 2..4 too: it frees nothing at the peak, so it is not chosen.
// (max-chain=1: the chain fill -> relu would read nothing and free %x;
// rematerialize-chain.mlir tests chains.)
//   0: fill a; 1: relu a -> x; 2: fill t; 3: relu t; 4: add x, x -> u
//   live 2, 3: x (1024) + t (3200) = 4224 > 4200
// CHECK-LABEL: func.func @input_would_die
// CHECK-NOT: colossal.recompute
func.func @input_would_die() {
  %a = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %va = cplan.view %a[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.kernel "fill" ins() outs(%va : memref<256xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%va : memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vx : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// A buffer read on another stream (here the D2H copy of a gradient, behind
// the event it waits for) is not recomputed: the recompute would run on
// stream 0 right before the copy but after its event, which the copy does
// not wait for (session 4: --check-plan found it in an offloaded OPT plan).
// Without that rule the matmul of @expensive_alone is recomputed here too.
// CHECK-LABEL: func.func @copy_reader
// CHECK-NOT: colossal.recompute
// CHECK: cplan.copy
func.func @copy_reader() {
  %w1 = cplan.buffer.alloc device size(256) align(64)
  %w2 = cplan.buffer.alloc device size(256) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %h = cplan.buffer.alloc host size(1024) align(64)
  %vw1 = cplan.view %w1[0] : memref<16x4xf32>
  %vw2 = cplan.view %w2[0] : memref<4x16xf32>
  %vx = cplan.view %x[0] : memref<16x16xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vh = cplan.view %h[0] : memref<16x16xf32>
  cplan.bind weight "w1" %vw1 : memref<16x4xf32>
  cplan.bind weight "w2" %vw2 : memref<4x16xf32>
  cplan.kernel "matmul" ins(%vw1, %vw2 : memref<16x4xf32>, memref<4x16xf32>) outs(%vx : memref<16x16xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.event.record 0 stream(0)
  cplan.event.wait 0 stream(2)
  cplan.copy %vx to %vh stream(2) : memref<16x16xf32>
  return
}
