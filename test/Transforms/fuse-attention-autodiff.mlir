// RUN: colossal-opt %s --colossal-fuse-attention --colossal-autodiff 2>/dev/null | FileCheck %s

// The fused op's gradient: one attention_grad on the forward's operands and
// results (out, lse) and d out; dq, dk, dv flow on to the projections. GQA:
// dk and dv have the kv heads' shape. No [S, T] tensor remains.
// CHECK-LABEL: func.func @micro_step
func.func @main(%x: tensor<1x4x8xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %wq = colossal.weight "wq" {trainable} : tensor<8x16xf32>
  %wk = colossal.weight "wk" {trainable} : tensor<8x8xf32>
  %wv = colossal.weight "wv" {trainable} : tensor<8x8xf32>
  %qp = colossal.matmul %x, %wq : (tensor<1x4x8xf32>, tensor<8x16xf32>) -> tensor<1x4x16xf32>
  %kp = colossal.matmul %x, %wk : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %vp = colossal.matmul %x, %wv : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %q4 = colossal.reshape %qp : (tensor<1x4x16xf32>) -> tensor<1x4x2x8xf32>
  %q = colossal.transpose %q4 {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x8xf32>) -> tensor<1x2x4x8xf32>
  %k = colossal.reshape %kp : (tensor<1x4x8xf32>) -> tensor<1x1x4x8xf32>
  %v = colossal.reshape %vp : (tensor<1x4x8xf32>) -> tensor<1x1x4x8xf32>
  %k1 = colossal.reshape %k : (tensor<1x1x4x8xf32>) -> tensor<1x1x1x4x8xf32>
  %k2 = colossal.expand %k1 : (tensor<1x1x1x4x8xf32>) -> tensor<1x1x2x4x8xf32>
  %k3 = colossal.reshape %k2 : (tensor<1x1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  %v1 = colossal.reshape %v : (tensor<1x1x4x8xf32>) -> tensor<1x1x1x4x8xf32>
  %v2 = colossal.expand %v1 : (tensor<1x1x1x4x8xf32>) -> tensor<1x1x2x4x8xf32>
  %v3 = colossal.reshape %v2 : (tensor<1x1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  %kt = colossal.transpose %k3 {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x8xf32>) -> tensor<1x2x8x4xf32>
  %s = colossal.matmul %q, %kt : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %mask = colossal.constant dense<[[0.0, -3.40282347E+38, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0, 0.0]]> : tensor<4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x2x4x4xf32>, tensor<4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = colossal.matmul %p, %v3 : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  %loss = colossal.reduce_sum %o {axes = array<i64: 0, 1, 2, 3>, keepdims = 0 : i64} : (tensor<1x2x4x8xf32>) -> tensor<f32>
  // CHECK: %[[O:.+]], %[[LSE:.+]] = colossal.attention %[[Q:[^,]+]], %[[K:[^,]+]], %[[V:[^ ]+]] {causal = 1 : i64, scale = 1.000000e+00 : f64} : (tensor<1x2x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>)
  // CHECK: %{{.+}}, %{{.+}}, %{{.+}} = colossal.attention_grad %[[Q]], %[[K]], %[[V]], %[[O]], %[[LSE]], %{{.+}} {causal = 1 : i64, scale = 1.000000e+00 : f64} : ({{.*}}) -> (tensor<1x2x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>)
  // CHECK-NOT: tensor<1x2x4x4xf32>
  // CHECK: colossal.assign "grad.wk"
  // CHECK-NOT: tensor<1x2x4x4xf32>
  // CHECK: return
  return %loss : tensor<f32>
}
