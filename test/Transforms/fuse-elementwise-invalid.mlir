// RUN: colossal-opt %s --split-input-file --verify-diagnostics

// The op table's rule for fused_elementwise programs (FusedProgram.cpp),
// through the op's verifier. Records: opcode dtype operands... [immediate];
// add 20, relu 10, matmul 40, fill 66, gelu 14; f32 1, bf16 3.

func.func @operand_not_yet_defined(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 0 (relu) operand 0 names register 1, expected one defined before it in [0, 1)}}
  %r = colossal.fused_elementwise %x {program = array<i64: 10, 1, 1>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @not_elementwise(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 0 has opcode 40, not an elementwise op kind}}
  %r = colossal.fused_elementwise %x {program = array<i64: 40, 1, 0, 0>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @dtype_not_the_ops(%x: tensor<4xf32>) -> tensor<4xbf16> {
  // expected-error @+1 {{fused_elementwise: record 0 (relu) has dtype bf16, but the op gives f32}}
  %r = colossal.fused_elementwise %x {program = array<i64: 10, 3, 0>} : (tensor<4xf32>) -> tensor<4xbf16>
  return %r : tensor<4xbf16>
}

// -----

func.func @operand_dtypes_differ(%x: tensor<4xf32>, %y: tensor<4xbf16>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 0 (add): add: operand dtypes differ, f32 vs bf16}}
  %r = colossal.fused_elementwise %x, %y {program = array<i64: 20, 1, 0, 1>} : (tensor<4xf32>, tensor<4xbf16>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @record_cut_short(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 1 (add) is cut short: needs 4 ints, 3 left}}
  %r = colossal.fused_elementwise %x {program = array<i64: 10, 1, 0, 20, 1, 1>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @constant_out_of_range(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 0 (fill) names constant 1, out of range [0, 1)}}
  %r = colossal.fused_elementwise %x {program = array<i64: 66, 1, 1, 20, 1, 0, 1>, constants = array<f64: 2.0>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @gelu_flag(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: record 0 (gelu) approximate must be 0 or 1, got 2}}
  %r = colossal.fused_elementwise %x {program = array<i64: 14, 1, 0, 2>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @input_does_not_broadcast(%x: tensor<3xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: input 0 3xf32 does not broadcast to shape 4xf32}}
  %r = colossal.fused_elementwise %x {program = array<i64: 10, 1, 0>} : (tensor<3xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @empty_program(%x: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{fused_elementwise: program has no records}}
  %r = colossal.fused_elementwise %x {program = array<i64>} : (tensor<4xf32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

func.func @result_not_last_register(%x: tensor<4xf32>) -> tensor<4xbf16> {
  // expected-error @+1 {{result #0 must be 4xf32 by the op's shape rule}}
  %r = colossal.fused_elementwise %x {program = array<i64: 10, 1, 0>} : (tensor<4xf32>) -> tensor<4xbf16>
  return %r : tensor<4xbf16>
}
