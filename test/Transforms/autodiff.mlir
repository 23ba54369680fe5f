// RUN: colossal-opt %s --split-input-file --colossal-autodiff 2>/dev/null | FileCheck %s

// A linear layer and a mean cross-entropy: micro_step returns the loss and
// the scored-label count, seeds the backward with the count, and adds the
// gradient of every trainable weight into its grad.<name> state. The logits
// output is dropped.
// CHECK-LABEL: func.func @micro_step(
// CHECK-SAME: {colossal.name = "x"}
// CHECK-SAME: {colossal.name = "labels"}
// CHECK-SAME: -> (tensor<f32> {colossal.name = "loss"}, tensor<f32> {colossal.name = "__count"})
func.func @main(%x: tensor<4x8xf32> {colossal.name = "x"}, %labels: tensor<4xi64> {colossal.name = "labels"})
    -> (tensor<f32> {colossal.name = "loss"}, tensor<4x5xf32> {colossal.name = "logits"}) {
  %w = colossal.weight "w" {trainable} : tensor<5x8xf32>
  %logits = colossal.matmul %x, %w {transpose_b = 1 : i64} : (tensor<4x8xf32>, tensor<5x8xf32>) -> tensor<4x5xf32>
  %loss = colossal.softmax_cross_entropy %logits, %labels {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<4x5xf32>, tensor<4xi64>) -> tensor<f32>
  // The count: labels that are not ignore_index.
  // CHECK: %[[IGN:.+]] = colossal.constant dense<-100> : tensor<i64>
  // CHECK: %[[EQ:.+]] = colossal.equal %arg1, %[[IGN]]
  // CHECK: %[[NE:.+]] = colossal.not %[[EQ]]
  // CHECK: %[[NEF:.+]] = colossal.cast %[[NE]] {{.*}} -> tensor<4xf32>
  // CHECK: %[[COUNT:.+]] = colossal.reduce_sum %[[NEF]] {axes = array<i64: 0>, keepdims = 0 : i64}
  // The backward: d loss = count, through the loss and the matmul.
  // CHECK: %[[DS:.+]] = colossal.softmax_cross_entropy_grad %{{.+}}, %arg1, %[[COUNT]]
  // dW = dS^T x (w is stored [out, in], transpose_b).
  // CHECK: %[[DW:.+]] = colossal.matmul %[[DS]], %arg0 {transpose_a = 1 : i64} : (tensor<4x5xf32>, tensor<4x8xf32>) -> tensor<5x8xf32>
  // CHECK: %[[ACC:.+]] = colossal.state "grad.w" : tensor<5x8xf32>
  // CHECK: %[[SUM:.+]] = colossal.add %[[ACC]], %[[DW]]
  // CHECK: colossal.assign "grad.w", %[[SUM]] : tensor<5x8xf32>
  // CHECK: return %{{.+}}, %[[COUNT]] : tensor<f32>, tensor<f32>
  return %loss, %logits : tensor<f32>, tensor<4x5xf32>
}

// -----

// A tied weight (used twice) sums both gradients; a frozen weight and the
// integer path get none.
// CHECK-LABEL: func.func @micro_step
func.func @main(%ids: tensor<3xi64> {colossal.name = "ids"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %e = colossal.weight "embed" {trainable} : tensor<10x4xf32>
  %frozen = colossal.weight "frozen" : tensor<4xf32>
  %h = colossal.gather %e, %ids {axis = 0 : i64} : (tensor<10x4xf32>, tensor<3xi64>) -> tensor<3x4xf32>
  %h2 = colossal.add %h, %frozen : (tensor<3x4xf32>, tensor<4xf32>) -> tensor<3x4xf32>
  %logits = colossal.matmul %h2, %e {transpose_b = 1 : i64} : (tensor<3x4xf32>, tensor<10x4xf32>) -> tensor<3x10xf32>
  %loss = colossal.reduce_sum %logits {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<3x10xf32>) -> tensor<f32>
  // CHECK-DAG: colossal.gather_grad
  // CHECK-DAG: colossal.matmul {{.*}} -> tensor<10x4xf32>
  // CHECK: %[[BOTH:.+]] = colossal.add %{{.+}}, %{{.+}} : (tensor<10x4xf32>, tensor<10x4xf32>) -> tensor<10x4xf32>
  // CHECK: colossal.state "grad.embed"
  // CHECK-NOT: grad.frozen
  // CHECK: return
  return %loss : tensor<f32>
}

// -----

// Any scalar loss other than a mean cross-entropy counts as one sample.
// CHECK-LABEL: func.func @micro_step
func.func @main(%x: tensor<3xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "w" {trainable} : tensor<3xf32>
  %p = colossal.mul %x, %w : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
  %loss = colossal.reduce_sum %p {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<3xf32>) -> tensor<f32>
  // CHECK: %[[ONE:.+]] = colossal.constant dense<1.000000e+00> : tensor<f32>
  // CHECK: return %{{.+}}, %[[ONE]]
  return %loss : tensor<f32>
}

// -----

// A weight shared by every batch entry (a rank-2 weight against a batched
// input) gets its gradient from one GEMM over the flattened batch, both
// as stored ([in, out]) and transposed ([out, in]): no batched product of
// [B, in, out] and no reduce_sum over B. The input's own gradient keeps the
// batched form (its shape is batched).
// CHECK-LABEL: func.func @micro_step
func.func @main(%x: tensor<2x3x4xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "w" {trainable} : tensor<4x5xf32>
  %v = colossal.weight "v" {trainable} : tensor<6x5xf32>
  %h = colossal.matmul %x, %w : (tensor<2x3x4xf32>, tensor<4x5xf32>) -> tensor<2x3x5xf32>
  %y = colossal.matmul %h, %v {transpose_b = 1 : i64} : (tensor<2x3x5xf32>, tensor<6x5xf32>) -> tensor<2x3x6xf32>
  %loss = colossal.reduce_sum %y {axes = array<i64: 0, 1, 2>, keepdims = 0 : i64} : (tensor<2x3x6xf32>) -> tensor<f32>
  // dH = dY v, batched (dH has the batch's shape).
  // CHECK: colossal.matmul %{{.+}}, %{{.+}} : (tensor<2x3x6xf32>, tensor<6x5xf32>) -> tensor<2x3x5xf32>
  // dV = dY^T h over the 6 rows of the flattened batch.
  // CHECK-NOT: colossal.reduce_sum
  // CHECK: %[[H2:.+]] = colossal.reshape %{{.+}} : (tensor<2x3x5xf32>) -> tensor<6x5xf32>
  // CHECK: %[[DY2:.+]] = colossal.reshape %{{.+}} : (tensor<2x3x6xf32>) -> tensor<6x6xf32>
  // CHECK: colossal.matmul %[[DY2]], %[[H2]] {transpose_a = 1 : i64} : (tensor<6x6xf32>, tensor<6x5xf32>) -> tensor<6x5xf32>
  // dW = x^T dH over the flattened batch.
  // CHECK: %[[X2:.+]] = colossal.reshape %arg0 : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  // CHECK: %[[DH2:.+]] = colossal.reshape %{{.+}} : (tensor<2x3x5xf32>) -> tensor<6x5xf32>
  // CHECK: colossal.matmul %[[X2]], %[[DH2]] {transpose_a = 1 : i64} : (tensor<6x4xf32>, tensor<6x5xf32>) -> tensor<4x5xf32>
  // CHECK-NOT: colossal.reduce_sum
  // CHECK-NOT: tensor<2x4x5xf32>
  // CHECK: return
  return %loss : tensor<f32>
}
