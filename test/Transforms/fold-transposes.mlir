// RUN: colossal-opt %s --split-input-file --colossal-fold-transposes | FileCheck %s
// RUN: colossal-opt %s --split-input-file --colossal-fold-transposes | colossal-opt --split-input-file | FileCheck %s --check-prefix=ROUND
// ROUND-COUNT-11: colossal.matmul

// nn.Linear as the dynamo export writes it: the weight [out, in] transposed
// by perm [1, 0] into a rank-3 activation's matmul. The matmul reads the
// weight with transpose_b and the transpose is erased; the result type and
// the broadcast of the rank-2 weight over the batch dim are unchanged.
// CHECK-LABEL: func.func @linear_weight
func.func @linear_weight(%x: tensor<2x3x4xf32>) -> tensor<2x3x6xf32> {
  // CHECK: %[[W:.+]] = colossal.weight "w" {trainable} : tensor<6x4xf32>
  %w = colossal.weight "w" {trainable} : tensor<6x4xf32>
  %wt = colossal.transpose %w {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
  // CHECK-NOT: colossal.transpose
  // CHECK: colossal.matmul %arg0, %[[W]] {transpose_b = 1 : i64} : (tensor<2x3x4xf32>, tensor<6x4xf32>) -> tensor<2x3x6xf32>
  %y = colossal.matmul %x, %wt : (tensor<2x3x4xf32>, tensor<4x6xf32>) -> tensor<2x3x6xf32>
  return %y : tensor<2x3x6xf32>
}

// -----

// A cast between the transpose and the matmul, used only by the matmul:
// the cast moves onto the weight (cast and transpose commute elementwise),
// the matmul reads it flagged, and the old transpose and cast are erased.
// CHECK-LABEL: func.func @through_cast
func.func @through_cast(%x: tensor<2x4xbf16>) -> tensor<2x6xbf16> {
  // CHECK: %[[W:.+]] = colossal.weight "w" {trainable} : tensor<6x4xf32>
  %w = colossal.weight "w" {trainable} : tensor<6x4xf32>
  %wt = colossal.transpose %w {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
  // CHECK: %[[WB:.+]] = colossal.cast %[[W]] : (tensor<6x4xf32>) -> tensor<6x4xbf16>
  %wb = colossal.cast %wt : (tensor<4x6xf32>) -> tensor<4x6xbf16>
  // CHECK-NOT: colossal.transpose
  // CHECK-NOT: colossal.cast
  // CHECK: colossal.matmul %arg0, %[[WB]] {transpose_b = 1 : i64} : (tensor<2x4xbf16>, tensor<6x4xbf16>) -> tensor<2x6xbf16>
  %y = colossal.matmul %x, %wb : (tensor<2x4xbf16>, tensor<4x6xbf16>) -> tensor<2x6xbf16>
  return %y : tensor<2x6xbf16>
}

// -----

// A cast with another user stays where it is (moving it would need a
// second cast): nothing folds.
// CHECK-LABEL: func.func @cast_with_other_user
func.func @cast_with_other_user(%x: tensor<2x4xbf16>) -> (tensor<2x6xbf16>, tensor<4x6xbf16>) {
  %w = colossal.weight "w" : tensor<6x4xf32>
  // CHECK: %[[WT:.+]] = colossal.transpose
  %wt = colossal.transpose %w {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
  // CHECK: %[[WB:.+]] = colossal.cast %[[WT]]
  %wb = colossal.cast %wt : (tensor<4x6xf32>) -> tensor<4x6xbf16>
  // CHECK: colossal.matmul %arg0, %[[WB]] : (tensor<2x4xbf16>, tensor<4x6xbf16>) -> tensor<2x6xbf16>
  %y = colossal.matmul %x, %wb : (tensor<2x4xbf16>, tensor<4x6xbf16>) -> tensor<2x6xbf16>
  return %y, %wb : tensor<2x6xbf16>, tensor<4x6xbf16>
}

// -----

// A transpose with another user stays for that user; the matmul still
// reads the source, flagged.
// CHECK-LABEL: func.func @transpose_with_other_user
func.func @transpose_with_other_user(%x: tensor<2x4xf32>, %w: tensor<6x4xf32>) -> (tensor<2x6xf32>, tensor<4x6xf32>) {
  // CHECK: %[[WT:.+]] = colossal.transpose %arg1 {perm = array<i64: 1, 0>}
  %wt = colossal.transpose %w {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
  %r = colossal.relu %wt : (tensor<4x6xf32>) -> tensor<4x6xf32>
  // CHECK: %[[R:.+]] = colossal.relu %[[WT]]
  // CHECK: %[[Y:.+]] = colossal.matmul %arg0, %arg1 {transpose_b = 1 : i64} : (tensor<2x4xf32>, tensor<6x4xf32>) -> tensor<2x6xf32>
  %y = colossal.matmul %x, %wt : (tensor<2x4xf32>, tensor<4x6xf32>) -> tensor<2x6xf32>
  // CHECK: return %[[Y]], %[[R]]
  return %y, %r : tensor<2x6xf32>, tensor<4x6xf32>
}

// -----

// Perms that move a batch dim are no matrix transpose: the head split
// [B, S, H, D] -> [B, H, S, D] (perm [0, 2, 1, 3]) and a rank-3 perm that
// swaps the last two dims but also moves dim 0 are left alone.
// CHECK-LABEL: func.func @not_last_two
func.func @not_last_two(%x: tensor<2x5x3x4xf32>, %y: tensor<2x3x4x5xf32>, %a: tensor<3x4x2xf32>, %b: tensor<2x3x6xf32>) -> (tensor<2x3x5x5xf32>, tensor<2x4x6xf32>) {
  // CHECK: %[[H:.+]] = colossal.transpose %arg0 {perm = array<i64: 0, 2, 1, 3>}
  %h = colossal.transpose %x {perm = array<i64: 0, 2, 1, 3>} : (tensor<2x5x3x4xf32>) -> tensor<2x3x5x4xf32>
  // CHECK: colossal.matmul %[[H]], %arg1 : (tensor<2x3x5x4xf32>, tensor<2x3x4x5xf32>)
  %s = colossal.matmul %h, %y : (tensor<2x3x5x4xf32>, tensor<2x3x4x5xf32>) -> tensor<2x3x5x5xf32>
  // CHECK: %[[P:.+]] = colossal.transpose %arg2 {perm = array<i64: 2, 1, 0>}
  %p = colossal.transpose %a {perm = array<i64: 2, 1, 0>} : (tensor<3x4x2xf32>) -> tensor<2x4x3xf32>
  // CHECK: colossal.matmul %[[P]], %arg3 : (tensor<2x4x3xf32>, tensor<2x3x6xf32>)
  %t = colossal.matmul %p, %b : (tensor<2x4x3xf32>, tensor<2x3x6xf32>) -> tensor<2x4x6xf32>
  return %s, %t : tensor<2x3x5x5xf32>, tensor<2x4x6xf32>
}

// -----

// Batched: k^T [B, H, D, T] by perm [0, 1, 3, 2] (attention left unfused)
// becomes transpose_b of k; a rank-3 lhs with a broadcast batch dim of 1
// against a batch of 2 keeps its broadcast with transpose_a.
// CHECK-LABEL: func.func @batched
func.func @batched(%q: tensor<2x3x5x4xf32>, %k: tensor<2x3x7x4xf32>, %a: tensor<1x4x3xf32>, %b: tensor<2x4x6xf32>) -> (tensor<2x3x5x7xf32>, tensor<1x3x6xf32>) {
  %kt = colossal.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<2x3x7x4xf32>) -> tensor<2x3x4x7xf32>
  // CHECK-NOT: colossal.transpose
  // CHECK: %[[S:.+]] = colossal.matmul %arg0, %arg1 {transpose_b = 1 : i64} : (tensor<2x3x5x4xf32>, tensor<2x3x7x4xf32>) -> tensor<2x3x5x7xf32>
  %s = colossal.matmul %q, %kt : (tensor<2x3x5x4xf32>, tensor<2x3x4x7xf32>) -> tensor<2x3x5x7xf32>
  %at = colossal.transpose %a {perm = array<i64: 0, 2, 1>} : (tensor<1x4x3xf32>) -> tensor<1x3x4xf32>
  // CHECK: %[[T:.+]] = colossal.matmul %arg2, %arg3 {transpose_a = 1 : i64} : (tensor<1x4x3xf32>, tensor<2x4x6xf32>) -> tensor<2x3x6xf32>
  %t = colossal.matmul %at, %b : (tensor<1x3x4xf32>, tensor<2x4x6xf32>) -> tensor<2x3x6xf32>
  %one = colossal.slice %t {starts = array<i64: 0, 0, 0>, steps = array<i64: 1, 1, 1>} : (tensor<2x3x6xf32>) -> tensor<1x3x6xf32>
  return %s, %one : tensor<2x3x5x7xf32>, tensor<1x3x6xf32>
}

// -----

// Both operands transposed, one of them already flagged: each flag toggles
// (transpose_b 1 -> 0 reads the transpose's source as stored; the default 0
// is not printed).
// CHECK-LABEL: func.func @both_operands
func.func @both_operands(%x: tensor<4x3xf32>, %y: tensor<4x5xf32>) -> tensor<3x5xf32> {
  %xt = colossal.transpose %x {perm = array<i64: 1, 0>} : (tensor<4x3xf32>) -> tensor<3x4xf32>
  %yt = colossal.transpose %y {perm = array<i64: 1, 0>} : (tensor<4x5xf32>) -> tensor<5x4xf32>
  // CHECK-NOT: colossal.transpose
  // CHECK: colossal.matmul %arg0, %arg1 {transpose_a = 1 : i64} : (tensor<4x3xf32>, tensor<4x5xf32>) -> tensor<3x5xf32>
  %z = colossal.matmul %xt, %yt {transpose_b = 1 : i64} : (tensor<3x4xf32>, tensor<5x4xf32>) -> tensor<3x5xf32>
  return %z : tensor<3x5xf32>
}

// -----

// One transpose read as both operands (x^T @ x^T, square): both fold, and
// through a cast used only by this matmul, one new cast serves both.
// CHECK-LABEL: func.func @same_value_twice
func.func @same_value_twice(%x: tensor<3x3xf32>) -> (tensor<3x3xf32>, tensor<3x3xbf16>) {
  %xt = colossal.transpose %x {perm = array<i64: 1, 0>} : (tensor<3x3xf32>) -> tensor<3x3xf32>
  // CHECK: %[[Z:.+]] = colossal.matmul %arg0, %arg0 {transpose_a = 1 : i64, transpose_b = 1 : i64}
  %z = colossal.matmul %xt, %xt : (tensor<3x3xf32>, tensor<3x3xf32>) -> tensor<3x3xf32>
  // CHECK: %[[C:.+]] = colossal.cast %arg0 : (tensor<3x3xf32>) -> tensor<3x3xbf16>
  %c = colossal.cast %xt : (tensor<3x3xf32>) -> tensor<3x3xbf16>
  // CHECK-NOT: colossal.cast
  // CHECK: %[[ZB:.+]] = colossal.matmul %[[C]], %[[C]] {transpose_a = 1 : i64, transpose_b = 1 : i64}
  %zb = colossal.matmul %c, %c : (tensor<3x3xbf16>, tensor<3x3xbf16>) -> tensor<3x3xbf16>
  // CHECK-NOT: colossal.transpose
  // CHECK: return %[[Z]], %[[ZB]]
  return %z, %zb : tensor<3x3xf32>, tensor<3x3xbf16>
}
