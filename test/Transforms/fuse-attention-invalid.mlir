// RUN: colossal-opt %s --split-input-file --verify-diagnostics

// The op table's shape rules, through the ops' verifiers.

func.func @heads_not_a_multiple(%q: tensor<1x3x4x8xf32>, %k: tensor<1x2x4x8xf32>) {
  // expected-error @+1 {{attention: query heads 3 must be a multiple of kv heads 2}}
  %o, %l = colossal.attention %q, %k, %k : (tensor<1x3x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> (tensor<1x3x4x8xf32>, tensor<1x3x4xf32>)
  return
}

// -----

func.func @bias_does_not_broadcast(%q: tensor<1x2x4x8xf32>, %b: tensor<1x1x3x4xf32>) {
  // expected-error @+1 {{attention: bias [1, 1, 3, 4] must broadcast to the scores [1, 2, 4, 4]}}
  %o, %l = colossal.attention %q, %q, %q, %b : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x1x3x4xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4xf32>)
  return
}

// -----

func.func @lse_not_f32(%q: tensor<1x2x4x8xbf16>) {
  // expected-error @+1 {{result #1 must be 1x2x4xf32 by the op's shape rule}}
  %o, %l = colossal.attention %q, %q, %q : (tensor<1x2x4x8xbf16>, tensor<1x2x4x8xbf16>, tensor<1x2x4x8xbf16>) -> (tensor<1x2x4x8xbf16>, tensor<1x2x4xbf16>)
  return
}

// -----

func.func @causal_flag(%q: tensor<1x2x4x8xf32>) {
  // expected-error @+1 {{attention: causal must be 0 or 1, got 2}}
  %o, %l = colossal.attention %q, %q, %q {causal = 2 : i64} : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4xf32>)
  return
}

// -----

func.func @grad_lse_shape(%q: tensor<1x2x4x8xf32>, %lse: tensor<1x2x5xf32>) {
  // expected-error @+1 {{attention_grad: lse 1x2x5xf32 must be 1x2x4xf32}}
  %a:3 = colossal.attention_grad %q, %q, %q, %q, %lse, %q : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x5xf32>, tensor<1x2x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>)
  return
}
