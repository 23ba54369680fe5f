// RUN: colossal-opt %s --split-input-file --colossal-assign-offsets | FileCheck %s

// Two buffers whose lifetimes do not overlap share offset 0.
// CHECK-LABEL: func.func @disjoint_lifetimes
// Lower bound = 64 + 64 = 128 (two buffers live at instructions 1 and 2);
// the packer reaches it: arena 128, not the 192 of three separate slots.
// CHECK-SAME: cplan.arena_bytes = array<i64: 128, 0>
// CHECK-SAME: cplan.lower_bound_bytes = array<i64: 128, 0>
func.func @disjoint_lifetimes() {
  // %a: written by 0, read by 1 -> live [0, 1]
  // CHECK: buffer.alloc device size(64) align(64) live([0, 1]) offset(0)
  %a = cplan.buffer.alloc device size(64) align(64)
  // %b: written by 1, read by 2 -> live [1, 2]; overlaps %a at 1
  // CHECK: buffer.alloc device size(64) align(64) live([1, 2]) offset(64)
  %b = cplan.buffer.alloc device size(64) align(64)
  // %c: written by 2, read by 3 -> live [2, 3]; free of %a, so it reuses 0
  // CHECK: buffer.alloc device size(64) align(64) live([2, 3]) offset(0)
  %c = cplan.buffer.alloc device size(64) align(64)
  %va = cplan.view %a[0] : memref<16xf32>
  %vb = cplan.view %b[0] : memref<16xf32>
  %vc = cplan.view %c[0] : memref<16xf32>
  cplan.kernel "fill" ins() outs(%va : memref<16xf32>) params {value = 1.0 : f64} stream(0)
  cplan.kernel "relu" ins(%va : memref<16xf32>) outs(%vb : memref<16xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vb : memref<16xf32>) outs(%vc : memref<16xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vc : memref<16xf32>) outs(%vc : memref<16xf32>) params {} stream(0)
  return
}

// -----

// Weights and constants live for the whole step; an input from the start
// to its last use; an output from its first write to the end.
// CHECK-LABEL: func.func @bindings
func.func @bindings() {
  // CHECK: size(16) align(16) live([0, 2]) offset
  %w = cplan.buffer.alloc device size(16) align(16)
  // CHECK: size(16) align(16) live([0, 0]) offset
  %x = cplan.buffer.alloc device size(16) align(16)
  // CHECK: size(16) align(16) live([1, 2]) offset
  %y = cplan.buffer.alloc device size(16) align(16)
  // CHECK: size(16) align(16) live([0, 1]) offset
  %t = cplan.buffer.alloc device size(16) align(16)
  %vw = cplan.view %w[0] : memref<4xf32>
  %vx = cplan.view %x[0] : memref<4xf32>
  %vy = cplan.view %y[0] : memref<4xf32>
  %vt = cplan.view %t[0] : memref<4xf32>
  cplan.bind weight "w" %vw : memref<4xf32>
  cplan.bind input "x" %vx : memref<4xf32>
  cplan.kernel "add" ins(%vx, %vw : memref<4xf32>, memref<4xf32>) outs(%vt : memref<4xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vt : memref<4xf32>) outs(%vy : memref<4xf32>) params {} stream(0)
  cplan.kernel "relu" ins(%vy : memref<4xf32>) outs(%vy : memref<4xf32>) params {} stream(0)
  cplan.bind output "y" %vy : memref<4xf32>
  return
}

// -----

// Alignment: a 100-byte buffer then a 16-byte-aligned one live at the same
// time: offset 112 = 100 rounded up to 16 (largest first: 100 goes to 0).
// CHECK-LABEL: func.func @alignment
// CHECK-SAME: cplan.arena_bytes = array<i64: 144, 0>
func.func @alignment() {
  // CHECK: size(100) align(16) live([0, 0]) offset(0)
  %a = cplan.buffer.alloc device size(100) align(16)
  // CHECK: size(32) align(16) live([0, 0]) offset(112)
  %b = cplan.buffer.alloc device size(32) align(16)
  %va = cplan.view %a[0] : memref<25xf32>
  %vb = cplan.view %b[0] : memref<f32>
  cplan.kernel "reduce_sum" ins(%va : memref<25xf32>) outs(%vb : memref<f32>) params {axes = array<i64: 0>, keepdims = 0 : i64} stream(0)
  return
}

// -----

// Each memory space has its own arena.
// CHECK-LABEL: func.func @spaces
// CHECK-SAME: cplan.arena_bytes = array<i64: 64, 32>
func.func @spaces() {
  // CHECK: device size(64) align(64) live([0, 0]) offset(0)
  %d = cplan.buffer.alloc device size(64) align(64)
  // CHECK: host size(32) align(32) live([0, 0]) offset(0)
  %h = cplan.buffer.alloc host size(32) align(32)
  %vd = cplan.view %d[0] : memref<8xf32>
  %vh = cplan.view %h[0] : memref<8xf32>
  cplan.copy %vd to %vh stream(0) : memref<8xf32>
  return
}

// -----

// An empty function must not crash.
// CHECK-LABEL: func.func @empty
func.func @empty() {
  return
}
