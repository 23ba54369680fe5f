// RUN: colossal-opt %s --colossal-mixed-precision | FileCheck %s

// The weight stays f32 (the master copy) and is read through a cast; the
// matmul runs in bf16; the f32 mask constant comes down to bf16; the
// cross-entropy reads the bf16 scores without a cast and its loss is f32
// (OpTable.h); the logits output is cast back to f32.
// CHECK-LABEL: func.func @main
func.func @main(%x: tensor<2x4xf32> {colossal.name = "x"}, %labels: tensor<2xi64> {colossal.name = "labels"})
    -> (tensor<f32> {colossal.name = "loss"}, tensor<2x3xf32> {colossal.name = "logits"}) {
  // CHECK: %[[XB:.+]] = colossal.cast %arg0 : (tensor<2x4xf32>) -> tensor<2x4xbf16>
  // CHECK: %[[W:.+]] = colossal.weight "w" : tensor<3x4xf32>
  // CHECK: %[[WB:.+]] = colossal.cast %[[W]] : (tensor<3x4xf32>) -> tensor<3x4xbf16>
  %w = colossal.weight "w" : tensor<3x4xf32>
  // CHECK: %[[Y:.+]] = colossal.matmul %[[XB]], %[[WB]] {{.*}} : (tensor<2x4xbf16>, tensor<3x4xbf16>) -> tensor<2x3xbf16>
  %y = colossal.matmul %x, %w {transpose_b = 1 : i64} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  // CHECK: %[[M:.+]] = colossal.constant dense<-1.000000e+00> : tensor<3xbf16>
  %m = colossal.constant dense<-1.0> : tensor<3xf32>
  // CHECK: %[[S:.+]] = colossal.add %[[Y]], %[[M]] : (tensor<2x3xbf16>, tensor<3xbf16>) -> tensor<2x3xbf16>
  %s = colossal.add %y, %m : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK-NOT: colossal.cast %[[S]]
  // CHECK: %[[L:.+]] = colossal.softmax_cross_entropy %[[S]], %arg1 {{.*}} : (tensor<2x3xbf16>, tensor<2xi64>) -> tensor<f32>
  %l = colossal.softmax_cross_entropy %s, %labels {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<2x3xf32>, tensor<2xi64>) -> tensor<f32>
  // CHECK: %[[OUT:.+]] = colossal.cast %[[S]] : (tensor<2x3xbf16>) -> tensor<2x3xf32>
  // CHECK: return %[[L]], %[[OUT]] : tensor<f32>, tensor<2x3xf32>
  return %l, %s : tensor<f32>, tensor<2x3xf32>
}
