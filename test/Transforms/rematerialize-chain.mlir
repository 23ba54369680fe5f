// RUN: colossal-opt %s --split-input-file --colossal-rematerialize="budget-bytes=4300 min-bytes=64" | FileCheck %s --check-prefixes=CHECK,THREE
// RUN: colossal-opt %s --split-input-file --colossal-rematerialize="budget-bytes=4300 min-bytes=64 max-chain=2" | FileCheck %s --check-prefixes=CHECK,TWO
// RUN: colossal-opt %s --split-input-file --colossal-rematerialize="budget-bytes=4300 min-bytes=64 max-chain=1" | FileCheck %s --check-prefixes=CHECK,ONE

// Chains: recompute a dead input of the producer too. Default rates, no
// offload; every buffer is 1024 bytes but the 3200-byte %t that makes the
// peak, and the weight %w is live over the whole step.

// %x = add(%y, %y), %y = relu(%w) dead after 1. Recomputing the add alone
// would keep %y live over the gap: it frees nothing at the peak (2, 3:
// w + x + t = 5248 > 4300). The chain relu -> add reads only %w: 4224.
//   0: relu w -> y; 1: add y, y -> x; 2: fill t; 3: relu t; 4: add x, x -> u
// CHECK-LABEL: func.func @two_kernel_chain
// ONE-NOT: colossal.recompute
// TWO: colossal.remat = {{{.*}}buffers = 1 : i64, bytes = 1024 : i64}
// TWO: cplan.kernel "relu" ins(%[[T:.+]] : memref<800xf32>) outs(%[[T]] :
// TWO-NEXT: %[[Y2:.+]] = cplan.buffer.alloc device size(1024) align(64)
// TWO-NOT: colossal.recomputed
// TWO-NEXT: %[[VY2:.+]] = cplan.view %[[Y2]][0]
// TWO-NEXT: cplan.kernel "relu" ins(%{{.+}} : memref<256xf32>) outs(%[[VY2]] : memref<256xf32>) {{.*}} {colossal.recompute}
// TWO-NEXT: %[[VY2R:.+]] = cplan.view %[[Y2]][0]
// TWO-NEXT: %[[X2:.+]] = cplan.buffer.alloc device size(1024) align(64) {colossal.recomputed}
// TWO-NEXT: %[[VX2:.+]] = cplan.view %[[X2]][0]
// TWO-NEXT: cplan.kernel "add" ins(%[[VY2R]], %[[VY2R]] : {{.*}}) outs(%[[VX2]] : memref<256xf32>) {{.*}} {colossal.recompute}
// TWO-NEXT: %[[VX2U:.+]] = cplan.view %[[X2]][0]
// TWO-NEXT: cplan.kernel "add" ins(%[[VX2U]], %[[VX2U]]
// THREE: colossal.remat = {{{.*}}buffers = 1 : i64, bytes = 1024 : i64}
// THREE-COUNT-2: {colossal.recompute}
func.func @two_kernel_chain() {
  %w = cplan.buffer.alloc device size(1024) align(64)
  %y = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %vw = cplan.view %w[0] : memref<256xf32>
  %vy = cplan.view %y[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.bind weight "w" %vw : memref<256xf32>
  cplan.kernel "relu" ins(%vw : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vy, %vy : memref<256xf32>, memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vx : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// The chain limit: %x needs relu -> relu -> add to read only %w (live at
// 3, 4: w + x + t = 5248). With two kernels the chain keeps %y1 live over
// the gap and frees nothing, so only the default limit of 3 recomputes it.
//   0: relu w -> y1; 1: relu y1 -> y2; 2: add y2, y2 -> x; 3: fill t;
//   4: relu t; 5: add x, x -> u
// CHECK-LABEL: func.func @chain_limit
// ONE-NOT: colossal.recompute
// TWO-NOT: colossal.recompute
// THREE: colossal.remat = {{{.*}}buffers = 1 : i64, bytes = 1024 : i64}
// THREE: cplan.kernel "relu" ins(%[[T:.+]] : memref<800xf32>) outs(%[[T]] :
// THREE: cplan.kernel "relu" {{.*}} {colossal.recompute}
// THREE: cplan.kernel "relu" {{.*}} {colossal.recompute}
// THREE: cplan.buffer.alloc device size(1024) align(64) {colossal.recomputed}
// THREE: cplan.kernel "add" {{.*}} {colossal.recompute}
// THREE-NEXT: cplan.view
// THREE-NEXT: cplan.kernel "add"
func.func @chain_limit() {
  %w = cplan.buffer.alloc device size(1024) align(64)
  %y1 = cplan.buffer.alloc device size(1024) align(64)
  %y2 = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %vw = cplan.view %w[0] : memref<256xf32>
  %vy1 = cplan.view %y1[0] : memref<256xf32>
  %vy2 = cplan.view %y2[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.bind weight "w" %vw : memref<256xf32>
  cplan.kernel "relu" ins(%vw : memref<256xf32>) outs(%vy1 : memref<256xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vy1 : memref<256xf32>) outs(%vy2 : memref<256xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vy2, %vy2 : memref<256xf32>, memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vx : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// A rewritten link is refused: %y is written twice (relu, then an in-place
// relu), so it is not recomputable and the chain stops at the add, which
// would keep %y live: nothing is recomputed.
// CHECK-LABEL: func.func @rewritten_link
// CHECK-NOT: colossal.recompute
func.func @rewritten_link() {
  %w = cplan.buffer.alloc device size(1024) align(64)
  %y = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %vw = cplan.view %w[0] : memref<256xf32>
  %vy = cplan.view %y[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.bind weight "w" %vw : memref<256xf32>
  cplan.kernel "relu" ins(%vw : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vy : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vy, %vy : memref<256xf32>, memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %vx : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}

// -----

// A leaf rewritten before the recompute is refused: %a is read by the
// chain's relu at 1 and filled again at 3, before the use of %x at 6, so
// the chain relu -> add (which would free %x at the peak, 4, 5: a + x + t
// = 5248) would read other bytes; the add alone keeps %y live and frees
// nothing: nothing is recomputed.
//   0: fill a; 1: relu a -> y; 2: add y, y -> x; 3: fill a; 4: fill t;
//   5: relu t; 6: add x, a -> u
// CHECK-LABEL: func.func @rewritten_leaf
// CHECK-NOT: colossal.recompute
func.func @rewritten_leaf() {
  %a = cplan.buffer.alloc device size(1024) align(64)
  %y = cplan.buffer.alloc device size(1024) align(64)
  %x = cplan.buffer.alloc device size(1024) align(64)
  %t = cplan.buffer.alloc device size(3200) align(64)
  %u = cplan.buffer.alloc device size(1024) align(64)
  %va = cplan.view %a[0] : memref<256xf32>
  %vy = cplan.view %y[0] : memref<256xf32>
  %vx = cplan.view %x[0] : memref<256xf32>
  %vt = cplan.view %t[0] : memref<800xf32>
  %vu = cplan.view %u[0] : memref<256xf32>
  cplan.kernel "fill" ins() outs(%va : memref<256xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%va : memref<256xf32>) outs(%vy : memref<256xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vy, %vy : memref<256xf32>, memref<256xf32>) outs(%vx : memref<256xf32>) params {} stream(0)
  cplan.kernel "fill" ins() outs(%va : memref<256xf32>) params {value = 2.0 : f64} stream(0)
  cplan.kernel "fill" ins() outs(%vt : memref<800xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%vt : memref<800xf32>) outs(%vt : memref<800xf32>) params {} stream(0)
  cplan.kernel "add" ins(%vx, %va : memref<256xf32>, memref<256xf32>) outs(%vu : memref<256xf32>) params {} stream(0)
  return
}
