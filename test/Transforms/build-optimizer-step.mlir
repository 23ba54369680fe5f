// RUN: colossal-opt %s --split-input-file --colossal-build-optimizer-step | FileCheck %s
// RUN: colossal-opt %s --split-input-file --colossal-build-optimizer-step="optimizer=sgd momentum=0.9 clip-grad-norm=1.0 schedule=cosine warmup-steps=2 total-steps=10 no-decay=bias" | FileCheck %s --check-prefix=SGD

// apply_step normalises each gradient by the batch's label count, takes the
// global norm, updates every trainable weight in place with AdamW and zeroes
// the gradient states. Each gradient is normalised twice: once for the norm
// (a temporary) and again right before its update, so that no full set of
// normalised gradients is alive at once.
// CHECK-LABEL: func.func @apply_step(
// CHECK-SAME: %[[STEP:.+]]: tensor<i64> {colossal.name = "__step"}
// CHECK-SAME: %[[COUNT:.+]]: tensor<f32> {colossal.name = "__count_total"}
// CHECK-SAME: -> (tensor<f32> {colossal.name = "grad_norm"}, tensor<f32> {colossal.name = "lr"})
// CHECK: %[[GW:.+]] = colossal.state "grad.w" : tensor<2x3xf32>
// CHECK: %[[NW:.+]] = colossal.div %[[GW]], %[[COUNT]]
// CHECK: %[[GB:.+]] = colossal.state "grad.bias" : tensor<3xf32>
// CHECK: %[[NB:.+]] = colossal.div %[[GB]], %[[COUNT]]
// CHECK: %[[NORM:.+]] = colossal.sqrt
// CHECK: %[[LR:.+]] = colossal.constant dense<1.000000e-03> : tensor<f32>
// CHECK: %[[GW2:.+]] = colossal.state "grad.w" : tensor<2x3xf32>
// CHECK: %[[NW2:.+]] = colossal.div %[[GW2]], %[[COUNT]]
// CHECK: %[[W:.+]] = colossal.weight "w" {trainable} : tensor<2x3xf32>
// CHECK: %[[M:.+]] = colossal.state "adam.m.w"
// CHECK: %[[V:.+]] = colossal.state "adam.v.w"
// CHECK: %[[P:[^,]+]], %[[PM:[^,]+]], %[[PV:[^ ]+]] = colossal.adamw %[[W]], %[[NW2]], %[[M]], %[[V]], %[[LR]], %[[STEP]] {beta1 = 9.000000e-01 : f64, beta2 = {{.*}}, eps = 1.000000e-08 : f64, weight_decay = 1.000000e-02 : f64}
// CHECK: colossal.assign "w", %[[P]]
// CHECK: colossal.assign "adam.m.w", %[[PM]]
// CHECK: colossal.assign "adam.v.w", %[[PV]]
// CHECK: colossal.adamw
// CHECK: %[[ZERO:.+]] = colossal.fill {value = 0.000000e+00 : f64} : () -> tensor<2x3xf32>
// CHECK: colossal.assign "grad.w", %[[ZERO]]
// CHECK: colossal.assign "grad.bias"
// CHECK: return %[[NORM]], %[[LR]]

// SGD with momentum, clipping, warm-up + cosine and no decay on biases.
// SGD-LABEL: func.func @apply_step(
// SGD: %[[NORM:.+]] = colossal.sqrt
// clip: coef = min(1, 1.0 / (norm + 1e-6))
// SGD: %[[EPS:.+]] = colossal.constant dense<9.99999997E-7> : tensor<f32>
// SGD: colossal.add %[[NORM]], %[[EPS]]
// SGD: colossal.div
// SGD: colossal.min
// SGD: colossal.mul
// The schedule: cos of the progress, warm-up where step < 2.
// SGD: colossal.cos
// SGD: colossal.less
// SGD: %[[LR:.+]] = colossal.mul
// SGD: colossal.sgd {{.*}}, %[[LR]], %{{.+}} {momentum = 9.000000e-01 : f64, weight_decay = 1.000000e-02 : f64}
// SGD: colossal.assign "sgd.momentum.w"
// The bias matches no-decay: weight_decay is 0 (the default, not printed).
// SGD: colossal.sgd {{.*}} {momentum = 9.000000e-01 : f64} :
// SGD: colossal.assign "sgd.momentum.bias"
func.func @micro_step(%x: tensor<3xf32> {colossal.name = "x"}) -> (tensor<f32> {colossal.name = "loss"}, tensor<f32> {colossal.name = "__count"}) {
  %w = colossal.weight "w" {trainable} : tensor<2x3xf32>
  %b = colossal.weight "bias" {trainable} : tensor<3xf32>
  %frozen = colossal.weight "frozen" : tensor<3xf32>
  %c = colossal.constant dense<1.0> : tensor<f32>
  return %c, %c : tensor<f32>, tensor<f32>
}

