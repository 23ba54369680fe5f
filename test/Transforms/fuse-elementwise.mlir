// RUN: colossal-opt %s --split-input-file --colossal-fuse-elementwise | FileCheck %s
// RUN: colossal-opt %s --split-input-file --colossal-fuse-elementwise | colossal-opt --split-input-file | FileCheck %s

// Programs below are records `opcode dtype operands... [immediate]`:
// opcodes add 20, mul 22, relu 10, cast 17, greater 33, where 35, fill 66,
// exp 3, gelu 14; dtypes f32 1, bf16 3, bool 9 (OpTable.h, DType.h).

// A chain add -> mul by a scalar constant -> relu: one op; the constant is
// a fill record (r3 = 0.5) and disappears from the graph.
// CHECK-LABEL: func.func @chain
// CHECK-SAME: (%[[X:.+]]: tensor<8x64xf32>, %[[B:.+]]: tensor<64xf32>)
// CHECK-NOT: colossal.constant
// CHECK: %[[R:.+]] = colossal.fused_elementwise %[[X]], %[[B]]
// CHECK-SAME: constants = array<f64: 5.000000e-01>
// CHECK-SAME: program = array<i64: 20, 1, 0, 1, 66, 1, 0, 22, 1, 2, 3, 10, 1, 4>
// CHECK-SAME: (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
// CHECK-NOT: colossal.add
// CHECK-NOT: colossal.relu
// CHECK: return %[[R]]
func.func @chain(%x: tensor<8x64xf32>, %b: tensor<64xf32>) -> tensor<8x64xf32> {
  %c = colossal.constant dense<0.5> : tensor<f32>
  %a = colossal.add %x, %b : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
  %m = colossal.mul %a, %c : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
  %r = colossal.relu %m : (tensor<8x64xf32>) -> tensor<8x64xf32>
  return %r : tensor<8x64xf32>
}

// -----

// %a is also returned: it cannot be an intermediate, so the group is cut
// there. add stays; mul and relu fuse, reading %a as an input.
// CHECK-LABEL: func.func @used_outside_cuts
// CHECK: %[[A:.+]] = colossal.add
// CHECK: %[[R:.+]] = colossal.fused_elementwise %[[A]], %{{[a-z0-9]+}} {
// CHECK-SAME: program = array<i64: 22, 1, 0, 1, 10, 1, 2>
// CHECK: return %[[R]], %[[A]]
func.func @used_outside_cuts(%x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %a = colossal.add %x, %y : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %m = colossal.mul %a, %y : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %r = colossal.relu %m : (tensor<4xf32>) -> tensor<4xf32>
  return %r, %a : tensor<4xf32>, tensor<4xf32>
}

// -----

// A value with two uses inside the group (a diamond) is an intermediate.
// CHECK-LABEL: func.func @diamond
// CHECK: colossal.fused_elementwise %{{.+}} {
// CHECK-SAME: program = array<i64: 3, 1, 0, 10, 1, 1, 22, 1, 1, 2, 20, 1, 3, 1>
// CHECK-NOT: colossal.exp
func.func @diamond(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = colossal.exp %x : (tensor<4xf32>) -> tensor<4xf32>
  %r = colossal.relu %e : (tensor<4xf32>) -> tensor<4xf32>
  %m = colossal.mul %e, %r : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s = colossal.add %m, %e : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %s : tensor<4xf32>
}

// -----

// Inputs of different shapes broadcast to the output's: [2, 1, 4] and
// [3, 1] give [2, 3, 4], and the where's bool mask [4] broadcasts too.
// CHECK-LABEL: func.func @broadcast_inputs
// CHECK-SAME: (%[[A:.+]]: tensor<2x1x4xf32>, %[[B:.+]]: tensor<3x1xf32>, %[[M:.+]]: tensor<4xi1>)
// CHECK: colossal.fused_elementwise %[[A]], %[[B]], %[[M]]
// CHECK-SAME: program = array<i64: 20, 1, 0, 1, 66, 1, 0, 35, 1, 2, 3, 4>
// CHECK-SAME: (tensor<2x1x4xf32>, tensor<3x1xf32>, tensor<4xi1>) -> tensor<2x3x4xf32>
func.func @broadcast_inputs(%a: tensor<2x1x4xf32>, %b: tensor<3x1xf32>, %m: tensor<4xi1>) -> tensor<2x3x4xf32> {
  %s = colossal.add %a, %b : (tensor<2x1x4xf32>, tensor<3x1xf32>) -> tensor<2x3x4xf32>
  %z = colossal.fill {value = 0.0 : f64} : () -> tensor<2x3x4xf32>
  %r = colossal.where %m, %s, %z : (tensor<4xi1>, tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  return %r : tensor<2x3x4xf32>
}

// -----

// Mixed precision: every register keeps its dtype (cast to bf16, add in
// bf16, gelu tanh form with its immediate 1, cast back to f32).
// CHECK-LABEL: func.func @dtypes_kept
// CHECK: colossal.fused_elementwise
// CHECK-SAME: program = array<i64: 17, 3, 0, 20, 3, 2, 1, 14, 3, 3, 1, 17, 1, 4>
// CHECK-SAME: (tensor<16xf32>, tensor<16xbf16>) -> tensor<16xf32>
func.func @dtypes_kept(%x: tensor<16xf32>, %b: tensor<16xbf16>) -> tensor<16xf32> {
  %h = colossal.cast %x : (tensor<16xf32>) -> tensor<16xbf16>
  %a = colossal.add %h, %b : (tensor<16xbf16>, tensor<16xbf16>) -> tensor<16xbf16>
  %g = colossal.gelu %a {approximate = 1 : i64} : (tensor<16xbf16>) -> tensor<16xbf16>
  %f = colossal.cast %g : (tensor<16xbf16>) -> tensor<16xf32>
  return %f : tensor<16xf32>
}

// -----

// Reductions and matmuls are never members: they cut chains on both sides.
// The relu -> exp pair before the reduction fuses; the lone add after the
// matmul and the lone neg after the reduction stay as they are.
// CHECK-LABEL: func.func @reductions_and_matmuls_untouched
// CHECK: %[[F:.+]] = colossal.fused_elementwise
// CHECK-SAME: program = array<i64: 10, 1, 0, 3, 1, 1>
// CHECK: colossal.reduce_sum %[[F]]
// CHECK: colossal.neg
// CHECK: colossal.matmul
// CHECK: colossal.add
// CHECK-NOT: colossal.fused_elementwise
func.func @reductions_and_matmuls_untouched(%x: tensor<4x4xf32>) -> (tensor<4xf32>, tensor<4x4xf32>) {
  %r = colossal.relu %x : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %e = colossal.exp %r : (tensor<4x4xf32>) -> tensor<4x4xf32>
  %s = colossal.reduce_sum %e {axes = array<i64: 1>, keepdims = 0 : i64} : (tensor<4x4xf32>) -> tensor<4xf32>
  %n = colossal.neg %s : (tensor<4xf32>) -> tensor<4xf32>
  %m = colossal.matmul %x, %x : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %a = colossal.add %m, %x : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  return %n, %a : tensor<4xf32>, tensor<4x4xf32>
}

// -----

// A single elementwise op is not "fused", even with a constant operand.
// CHECK-LABEL: func.func @single_op_alone
// CHECK: colossal.constant
// CHECK: colossal.mul
// CHECK-NOT: colossal.fused_elementwise
func.func @single_op_alone(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c = colossal.constant dense<2.0> : tensor<f32>
  %m = colossal.mul %x, %c : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  return %m : tensor<4xf32>
}

// -----

// A constant that is not a splat stays an input; a splat constant with
// another use outside the group stays in the graph for that use.
// CHECK-LABEL: func.func @constants
// CHECK: %[[K:.+]] = colossal.constant dense<[1.000000e+00, 2.000000e+00]>
// CHECK: %[[S:.+]] = colossal.constant dense<3.000000e+00>
// CHECK: colossal.fused_elementwise %{{.+}}, %[[K]]
// CHECK-SAME: constants = array<f64: 3.000000e+00>
// CHECK: return {{.*}}, %[[S]]
func.func @constants(%x: tensor<2xf32>) -> (tensor<2xf32>, tensor<f32>) {
  %k = colossal.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %s = colossal.constant dense<3.0> : tensor<f32>
  %a = colossal.add %x, %k : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  %m = colossal.mul %a, %s : (tensor<2xf32>, tensor<f32>) -> tensor<2xf32>
  return %m, %s : tensor<2xf32>, tensor<f32>
}

// -----

// More than 8 inputs: the group stops growing at the limit; the rest of
// the chain is fused separately.
// CHECK-LABEL: func.func @input_limit
// CHECK-COUNT-2: colossal.fused_elementwise
// CHECK-NOT: colossal.fused_elementwise
func.func @input_limit(%a0: tensor<4xf32>, %a1: tensor<4xf32>, %a2: tensor<4xf32>, %a3: tensor<4xf32>, %a4: tensor<4xf32>, %a5: tensor<4xf32>, %a6: tensor<4xf32>, %a7: tensor<4xf32>, %a8: tensor<4xf32>, %a9: tensor<4xf32>) -> tensor<4xf32> {
  %s1 = colossal.add %a0, %a1 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s2 = colossal.add %s1, %a2 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s3 = colossal.add %s2, %a3 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s4 = colossal.add %s3, %a4 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s5 = colossal.add %s4, %a5 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s6 = colossal.add %s5, %a6 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s7 = colossal.add %s6, %a7 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s8 = colossal.add %s7, %a8 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %s9 = colossal.add %s8, %a9 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %s9 : tensor<4xf32>
}

// -----

// Must not crash: an empty function, and zero-size tensors.
// CHECK-LABEL: func.func @empty
// CHECK-LABEL: func.func @zero_size
// CHECK: colossal.fused_elementwise
// CHECK-SAME: -> tensor<0x4xf32>
func.func @empty() {
  return
}
func.func @zero_size(%x: tensor<0x4xf32>) -> tensor<0x4xf32> {
  %e = colossal.exp %x : (tensor<0x4xf32>) -> tensor<0x4xf32>
  %n = colossal.neg %e : (tensor<0x4xf32>) -> tensor<0x4xf32>
  return %n : tensor<0x4xf32>
}
