// RUN: colossal-opt %s --split-input-file --colossal-fuse-attention | FileCheck %s

// Causal recognition from the mask's defining expression (not only from a
// constant): the bias is evaluated exactly over the S x T grid
// (lib/Analysis/CausalMask.cpp) and must equal HF's causal mask at every
// element, in every batch row.

// OPT dynamo export after --shape (scaled to B 2, S 4): the mask is
// where(and(and(true, keys <= queries), true[B,1,1,S]), 0, f32 min) of two
// index constants, too big for the importer to fold at real size. It
// becomes causal = 1, and the mask's ops die with their last use.
// CHECK-LABEL: func.func @opt_dynamo_mask
func.func @opt_dynamo_mask(%q: tensor<2x2x4x8xf32>, %k: tensor<2x2x4x8xf32>, %v: tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32> {
  %keys = colossal.constant dense<[[[[0, 1, 2, 3]]]]> : tensor<1x1x1x4xi64>
  %queries = colossal.constant dense<[[[[0], [1], [2], [3]]]]> : tensor<1x1x4x1xi64>
  %le = colossal.less_equal %keys, %queries : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %t = colossal.constant dense<true> : tensor<i1>
  %a = colossal.and %t, %le : (tensor<i1>, tensor<1x1x4x4xi1>) -> tensor<1x1x4x4xi1>
  %pad = colossal.constant dense<true> : tensor<2x1x1x4xi1>
  %c = colossal.and %a, %pad : (tensor<1x1x4x4xi1>, tensor<2x1x1x4xi1>) -> tensor<2x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  %mask = colossal.where %c, %zero, %min : (tensor<2x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<2x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<2x2x4x4xf32>, tensor<2x1x4x4xf32>) -> tensor<2x2x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<2x2x4x4xf32>) -> tensor<2x2x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<2x2x4x4xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32>
  // CHECK-NOT: colossal.less_equal
  // CHECK-NOT: colossal.where
  // CHECK: %[[O:.+]], %{{.+}} = colossal.attention %arg0, %arg1, %arg2 {causal = 1 : i64, scale = 1.000000e+00 : f64} : (tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>) -> (tensor<2x2x4x8xf32>, tensor<2x2x4xf32>)
  // CHECK-NOT: colossal.constant
  // CHECK: return %[[O]]
  return %o : tensor<2x2x4x8xf32>
}

// -----

// Torchscript / GPT-2 / LLaMA form: a constant bool grid (the buffer's
// lower triangle) and-ed with a batch splat, where(.., 0, -inf), shared by
// two layers: both become causal, and the shared mask goes with the last.
// CHECK-LABEL: func.func @shared_grid_mask
func.func @shared_grid_mask(%q: tensor<2x2x4x8xf32>, %k: tensor<2x2x4x8xf32>, %v: tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32> {
  %tril = colossal.constant dense<[[[[true, false, false, false], [true, true, false, false], [true, true, true, false], [true, true, true, true]]]]> : tensor<1x1x4x4xi1>
  %pad = colossal.constant dense<true> : tensor<2x1x1x4xi1>
  %c = colossal.and %tril, %pad : (tensor<1x1x4x4xi1>, tensor<2x1x1x4xi1>) -> tensor<2x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %inf = colossal.constant dense<0xFF800000> : tensor<f32>
  %mask = colossal.where %c, %zero, %inf : (tensor<2x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<2x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<2x2x4x4xf32>, tensor<2x1x4x4xf32>) -> tensor<2x2x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<2x2x4x4xf32>) -> tensor<2x2x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<2x2x4x4xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32>
  %s2 = colossal.matmul %o, %k {transpose_b = 1 : i64} : (tensor<2x2x4x8xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x4xf32>
  %s3 = colossal.add %mask, %s2 : (tensor<2x1x4x4xf32>, tensor<2x2x4x4xf32>) -> tensor<2x2x4x4xf32>
  %p2 = colossal.softmax %s3 {axis = 3 : i64} : (tensor<2x2x4x4xf32>) -> tensor<2x2x4x4xf32>
  %o2 = colossal.matmul %p2, %v : (tensor<2x2x4x4xf32>, tensor<2x2x4x8xf32>) -> tensor<2x2x4x8xf32>
  // CHECK-NOT: colossal.where
  // CHECK: %[[O1:.+]], %{{.+}} = colossal.attention %arg0, %arg1, %arg2 {causal = 1 : i64, scale = 1.000000e+00 : f64} :
  // CHECK: %[[O2:.+]], %{{.+}} = colossal.attention %[[O1]], %arg1, %arg2 {causal = 1 : i64, scale = 1.000000e+00 : f64} :
  // CHECK-NOT: colossal.where
  // CHECK: return %[[O2]]
  return %o2 : tensor<2x2x4x8xf32>
}

// -----

// The causal mask plus a padding term of zeros (a constant all-ones
// attention_mask turned into 0 / min): the sum is still exactly causal,
// and both biases go.
// CHECK-LABEL: func.func @causal_plus_zero_padding
func.func @causal_plus_zero_padding(%q: tensor<2x1x4x8xf32>, %k: tensor<2x1x4x8xf32>, %v: tensor<2x1x4x8xf32>) -> tensor<2x1x4x8xf32> {
  %keys = colossal.constant dense<[[[[0, 1, 2, 3]]]]> : tensor<1x1x1x4xi64>
  %queries = colossal.constant dense<[[[[0], [1], [2], [3]]]]> : tensor<1x1x4x1xi64>
  %le = colossal.less_equal %keys, %queries : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  %causal = colossal.where %le, %zero, %min : (tensor<1x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<1x1x4x4xf32>
  %ones = colossal.constant dense<1.000000e+00> : tensor<2x1x1x4xf32>
  %one = colossal.constant dense<1.000000e+00> : tensor<f32>
  %inv = colossal.sub %one, %ones : (tensor<f32>, tensor<2x1x1x4xf32>) -> tensor<2x1x1x4xf32>
  %padding = colossal.mul %inv, %min : (tensor<2x1x1x4xf32>, tensor<f32>) -> tensor<2x1x1x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<2x1x4x8xf32>, tensor<2x1x4x8xf32>) -> tensor<2x1x4x4xf32>
  %s1 = colossal.add %s, %causal : (tensor<2x1x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<2x1x4x4xf32>
  %s2 = colossal.add %s1, %padding : (tensor<2x1x4x4xf32>, tensor<2x1x1x4xf32>) -> tensor<2x1x4x4xf32>
  %p = colossal.softmax %s2 {axis = 3 : i64} : (tensor<2x1x4x4xf32>) -> tensor<2x1x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<2x1x4x4xf32>, tensor<2x1x4x8xf32>) -> tensor<2x1x4x8xf32>
  // CHECK-NOT: colossal.where
  // CHECK-NOT: colossal.add
  // CHECK: %[[O:.+]], %{{.+}} = colossal.attention %arg0, %arg1, %arg2 {causal = 1 : i64, scale = 1.000000e+00 : f64} : (tensor<2x1x4x8xf32>, tensor<2x1x4x8xf32>, tensor<2x1x4x8xf32>) ->
  // CHECK-NOT: colossal.add
  // CHECK: return %[[O]]
  return %o : tensor<2x1x4x8xf32>
}

// -----

// Not the causal mask: a sliding window of 2 keys (Mistral's). Every
// future key is masked, so causal = 1 lets the kernel skip them, but the
// window is more than causal: the bias stays, computed as before.
// CHECK-LABEL: func.func @sliding_window
func.func @sliding_window(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x4x8xf32>, %v: tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32> {
  %keys = colossal.constant dense<[[[[0, 1, 2, 3]]]]> : tensor<1x1x1x4xi64>
  %queries = colossal.constant dense<[[[[0], [1], [2], [3]]]]> : tensor<1x1x4x1xi64>
  %le = colossal.less_equal %keys, %queries : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %w = colossal.constant dense<2> : tensor<i64>
  %lo = colossal.sub %queries, %w : (tensor<1x1x4x1xi64>, tensor<i64>) -> tensor<1x1x4x1xi64>
  %in = colossal.greater %keys, %lo : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %c = colossal.and %le, %in : (tensor<1x1x4x4xi1>, tensor<1x1x4x4xi1>) -> tensor<1x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  // CHECK: %[[MASK:.+]] = colossal.where
  %mask = colossal.where %c, %zero, %min : (tensor<1x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<1x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x4x4xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32>
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {causal = 1 : i64, scale = 1.000000e+00 : f64}
  return %o : tensor<1x1x4x8xf32>
}

// -----

// Not the causal mask: the query index offset by one (keys <= queries + 1)
// opens one future key per row. No causal; the bias stays.
// CHECK-LABEL: func.func @offset_diagonal
func.func @offset_diagonal(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x4x8xf32>, %v: tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32> {
  %keys = colossal.constant dense<[[[[0, 1, 2, 3]]]]> : tensor<1x1x1x4xi64>
  %queries = colossal.constant dense<[[[[1], [2], [3], [4]]]]> : tensor<1x1x4x1xi64>
  %le = colossal.less_equal %keys, %queries : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  // CHECK: %[[MASK:.+]] = colossal.where
  %mask = colossal.where %le, %zero, %min : (tensor<1x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<1x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x4x4xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32>
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {scale = 1.000000e+00 : f64}
  return %o : tensor<1x1x4x8xf32>
}

// -----

// Not the causal mask: one batch row's grid differs (its last query sees
// one key fewer). Every row must be checked, not the first one only.
// CHECK-LABEL: func.func @batch_rows_differ
func.func @batch_rows_differ(%q: tensor<2x1x2x8xf32>, %k: tensor<2x1x2x8xf32>, %v: tensor<2x1x2x8xf32>) -> tensor<2x1x2x8xf32> {
  %grid = colossal.constant dense<[[[[true, false], [true, true]]], [[[true, false], [false, true]]]]> : tensor<2x1x2x2xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  // CHECK: %[[MASK:.+]] = colossal.where
  %mask = colossal.where %grid, %zero, %min : (tensor<2x1x2x2xi1>, tensor<f32>, tensor<f32>) -> tensor<2x1x2x2xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<2x1x2x8xf32>, tensor<2x1x2x8xf32>) -> tensor<2x1x2x2xf32>
  %s1 = colossal.add %s, %mask : (tensor<2x1x2x2xf32>, tensor<2x1x2x2xf32>) -> tensor<2x1x2x2xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<2x1x2x2xf32>) -> tensor<2x1x2x2xf32>
  %o = colossal.matmul %p, %v : (tensor<2x1x2x2xf32>, tensor<2x1x2x8xf32>) -> tensor<2x1x2x8xf32>
  // The grids are causal-or-more (future keys all masked), so causal is set.
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {causal = 1 : i64, scale = 1.000000e+00 : f64}
  return %o : tensor<2x1x2x8xf32>
}

// -----

// Not a mask: the key positions come from a function argument (data), so
// the expression cannot be evaluated at compile time; the bias stays.
// CHECK-LABEL: func.func @positions_from_input
func.func @positions_from_input(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x4x8xf32>, %v: tensor<1x1x4x8xf32>, %pos: tensor<1x1x1x4xi64>) -> tensor<1x1x4x8xf32> {
  %queries = colossal.constant dense<[[[[0], [1], [2], [3]]]]> : tensor<1x1x4x1xi64>
  %le = colossal.less_equal %pos, %queries : (tensor<1x1x1x4xi64>, tensor<1x1x4x1xi64>) -> tensor<1x1x4x4xi1>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %min = colossal.constant dense<-3.40282347E+38> : tensor<f32>
  // CHECK: %[[MASK:.+]] = colossal.where
  %mask = colossal.where %le, %zero, %min : (tensor<1x1x4x4xi1>, tensor<f32>, tensor<f32>) -> tensor<1x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x4x4xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32>
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {scale = 1.000000e+00 : f64}
  return %o : tensor<1x1x4x8xf32>
}

// -----

// Not a mask: a frozen weight holding a causal-looking table is data (its
// value is loaded at run time), so the bias stays.
// CHECK-LABEL: func.func @mask_from_weight
func.func @mask_from_weight(%q: tensor<1x1x4x8xf32>, %k: tensor<1x1x4x8xf32>, %v: tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32> {
  %w = colossal.weight "causal_table" : tensor<1x1x4x4xf32>
  %zero = colossal.constant dense<0.000000e+00> : tensor<f32>
  %mask = colossal.add %w, %zero : (tensor<1x1x4x4xf32>, tensor<f32>) -> tensor<1x1x4x4xf32>
  %s = colossal.matmul %q, %k {transpose_b = 1 : i64} : (tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x4xf32>
  %s1 = colossal.add %s, %mask : (tensor<1x1x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %p = colossal.softmax %s1 {axis = 3 : i64} : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x4xf32>
  %o = colossal.matmul %p, %v : (tensor<1x1x4x4xf32>, tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32>
  // CHECK: %[[MASK:.+]] = colossal.add %{{.+}}, %{{.+}} : (tensor<1x1x4x4xf32>, tensor<f32>)
  // CHECK: colossal.attention %arg0, %arg1, %arg2, %[[MASK]] {scale = 1.000000e+00 : f64}
  return %o : tensor<1x1x4x8xf32>
}
