// RUN: colossal-opt %s | colossal-opt | FileCheck %s

// Every graph op prints and parses back unchanged.

// CHECK-LABEL: func.func @sources
func.func @sources() -> (tensor<4x3xf32>, tensor<2xi64>, tensor<f32>) {
  // CHECK: colossal.weight "model.w" : tensor<4x3xf32>
  %w = colossal.weight "model.w" : tensor<4x3xf32>
  // CHECK: colossal.constant dense<[2, 16]> : tensor<2xi64>
  %c = colossal.constant dense<[2, 16]> : tensor<2xi64>
  // CHECK: colossal.fill {value = 5.000000e-01 : f64} : () -> tensor<f32>
  %f = colossal.fill {value = 0.5 : f64} : () -> tensor<f32>
  return %w, %c, %f : tensor<4x3xf32>, tensor<2xi64>, tensor<f32>
}

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<2x3xf32>, %b: tensor<3xf32>, %m: tensor<2x3xi1>) {
  // CHECK: colossal.neg %{{.*}} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %0 = colossal.neg %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.abs
  %1 = colossal.abs %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.exp
  %2 = colossal.exp %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.log
  %3 = colossal.log %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.sqrt
  %4 = colossal.sqrt %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.rsqrt
  %5 = colossal.rsqrt %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.reciprocal
  %6 = colossal.reciprocal %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.tanh
  %7 = colossal.tanh %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.sigmoid
  %8 = colossal.sigmoid %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.relu
  %9 = colossal.relu %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.erf
  %10 = colossal.erf %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.sin
  %11 = colossal.sin %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.cos
  %12 = colossal.cos %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.gelu %{{.*}} {approximate = 1 : i64}
  %13 = colossal.gelu %a {approximate = 1 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.not
  %14 = colossal.not %m : (tensor<2x3xi1>) -> tensor<2x3xi1>
  // CHECK: colossal.identity
  %15 = colossal.identity %a : (tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.cast %{{.*}} : (tensor<2x3xf32>) -> tensor<2x3xbf16>
  %16 = colossal.cast %a : (tensor<2x3xf32>) -> tensor<2x3xbf16>
  // Broadcasting: [2, 3] with [3].
  // CHECK: colossal.add %{{.*}}, %{{.*}} : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  %17 = colossal.add %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.sub
  %18 = colossal.sub %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.mul
  %19 = colossal.mul %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.div
  %20 = colossal.div %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.pow
  %21 = colossal.pow %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.max
  %22 = colossal.max %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.min
  %23 = colossal.min %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  // CHECK: colossal.and
  %24 = colossal.and %m, %m : (tensor<2x3xi1>, tensor<2x3xi1>) -> tensor<2x3xi1>
  // CHECK: colossal.or
  %25 = colossal.or %m, %m : (tensor<2x3xi1>, tensor<2x3xi1>) -> tensor<2x3xi1>
  // CHECK: colossal.xor
  %26 = colossal.xor %m, %m : (tensor<2x3xi1>, tensor<2x3xi1>) -> tensor<2x3xi1>
  // CHECK: colossal.equal %{{.*}} -> tensor<2x3xi1>
  %27 = colossal.equal %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xi1>
  // CHECK: colossal.less
  %28 = colossal.less %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xi1>
  // CHECK: colossal.less_equal
  %29 = colossal.less_equal %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xi1>
  // CHECK: colossal.greater
  %30 = colossal.greater %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xi1>
  // CHECK: colossal.greater_equal
  %31 = colossal.greater_equal %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xi1>
  // CHECK: colossal.where %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  %32 = colossal.where %m, %a, %b : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  return
}

// CHECK-LABEL: func.func @structured
func.func @structured(%x: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %s: tensor<8xf32>,
                      %ids: tensor<2x4xi64>, %t: tensor<10x8xf32>, %lab: tensor<2xi64>,
                      %sc: tensor<2x5xf32>, %gi: tensor<3x1xi64>) {
  // CHECK: colossal.matmul %{{.*}}, %{{.*}} {transpose_b = 1 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  %0 = colossal.matmul %x, %w {transpose_b = 1 : i64} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x16xf32>
  // CHECK: colossal.reduce_sum %{{.*}} {axes = array<i64: 1, 2>, keepdims = 0 : i64}
  %1 = colossal.reduce_sum %x {axes = array<i64: 1, 2>, keepdims = 0 : i64} : (tensor<2x4x8xf32>) -> tensor<2xf32>
  // CHECK: colossal.reduce_mean %{{.*}} {axes = array<i64: 2>, keepdims = 1 : i64}
  %2 = colossal.reduce_mean %x {axes = array<i64: 2>, keepdims = 1 : i64} : (tensor<2x4x8xf32>) -> tensor<2x4x1xf32>
  // CHECK: colossal.reduce_max
  %3 = colossal.reduce_max %x {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<2x4x8xf32>) -> tensor<4x8xf32>
  // CHECK: colossal.reduce_min
  %4 = colossal.reduce_min %x {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<2x4x8xf32>) -> tensor<4x8xf32>
  // CHECK: colossal.softmax %{{.*}} {axis = 2 : i64}
  %5 = colossal.softmax %x {axis = 2 : i64} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  // CHECK: colossal.log_softmax
  %6 = colossal.log_softmax %x {axis = 2 : i64} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  // CHECK: colossal.layer_norm %{{.*}}, %{{.*}}, %{{.*}} {axis = 2 : i64, epsilon = 1.000000e-05 : f64}
  %7 = colossal.layer_norm %x, %s, %s {axis = 2 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  // The bias is optional.
  // CHECK: colossal.layer_norm %{{.*}}, %{{.*}} {axis = 2 : i64
  %8 = colossal.layer_norm %x, %s {axis = 2 : i64, epsilon = 1.0e-5 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  // CHECK: colossal.gather %{{.*}}, %{{.*}} {axis = 0 : i64} : (tensor<10x8xf32>, tensor<2x4xi64>) -> tensor<2x4x8xf32>
  %9 = colossal.gather %t, %ids {axis = 0 : i64} : (tensor<10x8xf32>, tensor<2x4xi64>) -> tensor<2x4x8xf32>
  // CHECK: colossal.cumsum %{{.*}} {axis = 1 : i64, exclusive = 1 : i64}
  %10 = colossal.cumsum %ids {axis = 1 : i64, exclusive = 1 : i64} : (tensor<2x4xi64>) -> tensor<2x4xi64>
  // CHECK: colossal.reshape %{{.*}} : (tensor<2x4x8xf32>) -> tensor<8x8xf32>
  %11 = colossal.reshape %x : (tensor<2x4x8xf32>) -> tensor<8x8xf32>
  // CHECK: colossal.expand %{{.*}} : (tensor<8xf32>) -> tensor<3x8xf32>
  %12 = colossal.expand %s : (tensor<8xf32>) -> tensor<3x8xf32>
  // CHECK: colossal.transpose %{{.*}} {perm = array<i64: 0, 2, 1>}
  %13 = colossal.transpose %x {perm = array<i64: 0, 2, 1>} : (tensor<2x4x8xf32>) -> tensor<2x8x4xf32>
  // Reversed rows: start at 3, step -1.
  // CHECK: colossal.slice %{{.*}} {starts = array<i64: 0, 3, 0>, steps = array<i64: 1, -1, 2>}
  %14 = colossal.slice %x {starts = array<i64: 0, 3, 0>, steps = array<i64: 1, -1, 2>} : (tensor<2x4x8xf32>) -> tensor<2x4x4xf32>
  // CHECK: colossal.concat %{{.*}}, %{{.*}} {axis = 1 : i64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x8x8xf32>
  %15 = colossal.concat %x, %x {axis = 1 : i64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x8x8xf32>
  // CHECK: colossal.pad %{{.*}} {pads = array<i64: 0, 1, 0, 0, 0, -1>, value = -1.000000e+02 : f64}
  %16 = colossal.pad %x {pads = array<i64: 0, 1, 0, 0, 0, -1>, value = -100.0 : f64} : (tensor<2x4x8xf32>) -> tensor<2x5x7xf32>
  // CHECK: colossal.softmax_cross_entropy %{{.*}}, %{{.*}} {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<2x5xf32>, tensor<2xi64>) -> tensor<f32>
  %17 = colossal.softmax_cross_entropy %sc, %lab {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<2x5xf32>, tensor<2xi64>) -> tensor<f32>
  // Each index row picks one row of %t: [3, 1] indices -> [3, 8].
  // CHECK: colossal.gather_nd %{{.*}}, %{{.*}} : (tensor<10x8xf32>, tensor<3x1xi64>) -> tensor<3x8xf32>
  %18 = colossal.gather_nd %t, %gi : (tensor<10x8xf32>, tensor<3x1xi64>) -> tensor<3x8xf32>
  return
}
