// RUN: colossal-opt %s --split-input-file --colossal-fuse-attention | FileCheck %s
// RUN: colossal-opt %s --split-input-file --colossal-fuse-attention | colossal-opt --split-input-file | FileCheck %s --check-prefix=ROUND
// ROUND-COUNT-6: colossal.attention

// OPT (both exporters): q pre-scaled outside, a mul by the constant 1.0, a
// constant causal mask [B, 1, S, T] of 0 and f32 min, k transposed by
// perm [0, 1, 3, 2]. The mask becomes causal = 1 and disappears; k is the
// transpose's source; the scores chain, softmax and mask are erased.
// CHECK-LABEL: func.func @opt
func.func @opt(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x4x8xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %kt = colossal.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x8xf32>) -> tensor<1x2x8x4xf32>
  %s = colossal.matmul %q, %kt : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %one = colossal.constant dense<1.000000e+00> : tensor<f32>
  %s1 = colossal.mul %s, %one : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %mask = colossal.constant dense<[[[[0.0, -3.40282347E+38, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0, 0.0]]]]> : tensor<1x1x4x4xf32>
  %s2 = colossal.add %s1, %mask : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = colossal.softmax %s2 {axis = 3 : i64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  // CHECK: %[[O:.+]], %{{.+}} = colossal.attention %arg0, %arg1, %arg2 {causal = 1 : i64, scale = 1.000000e+00 : f64} : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4xf32>)
  // CHECK-NOT: colossal.softmax
  // CHECK-NOT: colossal.matmul
  // CHECK-NOT: colossal.constant
  // CHECK: return %[[O]]
  return %o : tensor<1x2x4x8xf32>
}

// -----

// GPT-2 torchscript: k^T straight from the [B, T, H, D] projection
// (perm [0, 2, 3, 1]), the scale as a div; k becomes one transpose of the
// projection ([0, 2, 1, 3]) and the old transpose dies. A causal mask
// (bottom-right aligned, S = 2 < T = 3) with one extra masked key (a padding
// position) keeps its bias and also sets causal.
// CHECK-LABEL: func.func @gpt2_torchscript
func.func @gpt2_torchscript(%q: tensor<1x2x2x8xf32>, %kp: tensor<1x3x2x8xf32>, %v: tensor<1x2x3x8xf32>) -> tensor<1x2x2x8xf32> {
  %kt = colossal.transpose %kp {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x3x2x8xf32>) -> tensor<1x2x8x3xf32>
  %s = colossal.matmul %q, %kt : (tensor<1x2x2x8xf32>, tensor<1x2x8x3xf32>) -> tensor<1x2x2x3xf32>
  %c = colossal.constant dense<4.000000e+00> : tensor<1x1x1x1xf32>
  %s1 = colossal.div %s, %c : (tensor<1x2x2x3xf32>, tensor<1x1x1x1xf32>) -> tensor<1x2x2x3xf32>
  %mask = colossal.constant dense<[[[[-3.40282347E+38, 0.0, -3.40282347E+38], [-3.40282347E+38, 0.0, 0.0]]]]> : tensor<1x1x2x3xf32>
  %s2 = colossal.add %mask, %s1 : (tensor<1x1x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x2x2x3xf32>
  %p = colossal.softmax %s2 {axis = 3 : i64} : (tensor<1x2x2x3xf32>) -> tensor<1x2x2x3xf32>
  %o = colossal.matmul %p, %v : (tensor<1x2x2x3xf32>, tensor<1x2x3x8xf32>) -> tensor<1x2x2x8xf32>
  // CHECK: %[[MASK:.+]] = colossal.constant {{.*}} : tensor<1x1x2x3xf32>
  // CHECK: %[[K:.+]] = colossal.transpose %arg1 {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x3x2x8xf32>) -> tensor<1x2x3x8xf32>
  // CHECK: %[[O:.+]], %{{.+}} = colossal.attention %arg0, %[[K]], %arg2, %[[MASK]] {causal = 1 : i64, scale = 2.500000e-01 : f64}
  // CHECK-NOT: colossal.transpose
  // CHECK: return %[[O]]
  return %o : tensor<1x2x2x8xf32>
}

// -----

// LLaMA/Mistral GQA: repeat_kv (reshape, expand, reshape) of 1 kv head to
// 2 query heads on k and v; the op reads the kv head unexpanded and the
// repeat chains are erased. matmul's transpose_b form of k^T.
// CHECK-LABEL: func.func @gqa
func.func @gqa(%q: tensor<1x2x4x8xf32>, %k: tensor<1x1x4x8xf32>, %v: tensor<1x1x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %k1 = colossal.reshape %k : (tensor<1x1x4x8xf32>) -> tensor<1x1x1x4x8xf32>
  %k2 = colossal.expand %k1 : (tensor<1x1x1x4x8xf32>) -> tensor<1x1x2x4x8xf32>
  %k3 = colossal.reshape %k2 : (tensor<1x1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  %v1 = colossal.reshape %v : (tensor<1x1x4x8xf32>) -> tensor<1x1x1x4x8xf32>
  %v2 = colossal.expand %v1 : (tensor<1x1x1x4x8xf32>) -> tensor<1x1x2x4x8xf32>
  %v3 = colossal.reshape %v2 : (tensor<1x1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  %s = colossal.matmul %q, %k3 {transpose_b = 1 : i64} : (tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x4xf32>
  %c = colossal.constant dense<0.353553385> : tensor<f32>
  %s1 = colossal.mul %c, %s : (tensor<f32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = colossal.matmul %p, %v3 : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  // CHECK-NOT: colossal.expand
  // CHECK: %[[O:.+]], %{{.+}} = colossal.attention %arg0, %arg1, %arg2 {scale = 0.35355338{{[0-9]*}} : f64} : (tensor<1x2x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4xf32>)
  // CHECK-NOT: colossal.reshape
  // CHECK: return %[[O]]
  return %o : tensor<1x2x4x8xf32>
}

// -----

// A padding mask computed from an input (not a constant) stays the bias;
// two adds sum their biases into one.
// CHECK-LABEL: func.func @padding_mask
func.func @padding_mask(%q: tensor<2x2x4x8xf32>, %k: tensor<2x2x4x8xf32>, %v: tensor<2x2x4x8xf32>, %pad: tensor<2x1x1x4xf32>, %rel: tensor<4x4xf32>) -> tensor<2x2x4x8xf32> {
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x4xf32>
  %s1 = colossal.add %s, %pad : (tensor<2x2x4x4xf32>, tensor<2x1x1x4xf32>) -> tensor<2x2x4x4xf32>
  %s2 = colossal.add %s1, %rel : (tensor<2x2x4x4xf32>, tensor<4x4xf32>) -> tensor<2x2x4x4xf32>
  %p = colossal.softmax %s2 {axis = 3 : i64} : (tensor<2x2x4x4xf32>) -> tensor<2x2x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<2x2x4x4xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32>
  // CHECK: %[[BIAS:.+]] = colossal.add %arg4, %arg3 : (tensor<4x4xf32>, tensor<2x1x1x4xf32>) -> tensor<2x1x4x4xf32>
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[BIAS]] {scale = 1.000000e+00 : f64}
  return %o : tensor<2x2x4x8xf32>
}

// -----

// A constant mask that closes a whole row is kept as a plain bias (no
// causal): fused and unfused then agree on that row too.
// CHECK-LABEL: func.func @closed_row
func.func @closed_row(%q: tensor<1x1x2x8xf32>, %k: tensor<1x1x2x8xf32>, %v: tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32> {
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x2xf32>
  %mask = colossal.constant dense<[[-3.40282347E+38, -3.40282347E+38], [0.0, 0.0]]> : tensor<2x2xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x1x2x2xf32>, tensor<2x2xf32>) -> tensor<1x1x2x2xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x2x2xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  // CHECK: %[[MASK:.+]] = colossal.constant
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {scale = 1.000000e+00 : f64}
  return %o : tensor<1x1x2x8xf32>
}

// -----

// bf16 (after mixed precision, if a pipeline ran it first) fuses the same.
// CHECK-LABEL: func.func @bf16
func.func @bf16(%q: tensor<1x1x2x8xbf16>, %k: tensor<1x1x2x8xbf16>, %v: tensor<1x1x2x8xbf16>) -> tensor<1x1x2x8xbf16> {
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xbf16>, tensor<1x1x2x8xbf16>) -> tensor<1x1x2x2xbf16>
  %p = colossal.softmax %s {axis = 3 : i64} : (tensor<1x1x2x2xbf16>) -> tensor<1x1x2x2xbf16>
  %o = colossal.matmul %p, %v : (tensor<1x1x2x2xbf16>, tensor<1x1x2x8xbf16>) -> tensor<1x1x2x8xbf16>
  // CHECK: colossal.attention {{.*}} -> (tensor<1x1x2x8xbf16>, tensor<1x1x2xf32>)
  return %o : tensor<1x1x2x8xbf16>
}

// -----

// Not fused: the probabilities are also returned (output_attentions).
// CHECK-LABEL: func.func @probs_returned
func.func @probs_returned(%q: tensor<1x1x2x8xf32>, %k: tensor<1x1x2x8xf32>, %v: tensor<1x1x2x8xf32>) -> (tensor<1x1x2x8xf32>, tensor<1x1x2x2xf32>) {
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x2xf32>
  %p = colossal.softmax %s {axis = 3 : i64} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x2x2xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  // CHECK-NOT: colossal.attention
  // CHECK: colossal.softmax
  // CHECK-NOT: colossal.attention
  return %o, %p : tensor<1x1x2x8xf32>, tensor<1x1x2x2xf32>
}

// -----

// Not fused: a bias from a trainable weight (a learned relative position
// bias) needs a gradient that attention_grad does not give.
// CHECK-LABEL: func.func @trainable_bias
func.func @trainable_bias(%q: tensor<1x1x2x8xf32>, %k: tensor<1x1x2x8xf32>, %v: tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32> {
  %b = colossal.weight "rel_bias" {trainable} : tensor<2x2xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x2xf32>
  %s1 = colossal.add %s, %b : (tensor<1x1x2x2xf32>, tensor<2x2xf32>) -> tensor<1x1x2x2xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x2x2xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  // CHECK-NOT: colossal.attention
  // CHECK: colossal.softmax
  return %o : tensor<1x1x2x8xf32>
}

// -----

// Not fused: a scale applied after the mask, and a softmax over another
// axis.
// CHECK-LABEL: func.func @scale_after_mask
func.func @scale_after_mask(%q: tensor<1x1x2x8xf32>, %k: tensor<1x1x2x8xf32>, %v: tensor<1x1x2x8xf32>, %m: tensor<1x1x2x2xf32>) -> (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) {
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x2xf32>
  %s1 = colossal.add %s, %m : (tensor<1x1x2x2xf32>, tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %c = colossal.constant dense<5.000000e-01> : tensor<f32>
  %s2 = colossal.mul %s1, %c : (tensor<1x1x2x2xf32>, tensor<f32>) -> tensor<1x1x2x2xf32>
  %p = colossal.softmax %s2 {axis = 3 : i64} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x2x2xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  %t = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x2xf32>
  %pt = colossal.softmax %t {axis = 2 : i64} : (tensor<1x1x2x2xf32>) -> tensor<1x1x2x2xf32>
  %ot = colossal.matmul %pt, %v : (tensor<1x1x2x2xf32>, tensor<1x1x2x8xf32>) -> tensor<1x1x2x8xf32>
  // CHECK-NOT: colossal.attention
  // CHECK-COUNT-2: colossal.softmax
  // CHECK-NOT: colossal.attention
  return %o, %ot : tensor<1x1x2x8xf32>, tensor<1x1x2x8xf32>
}
