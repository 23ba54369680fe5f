// RUN: colossal-opt %s --split-input-file --colossal-build-optimizer-step --verify-diagnostics

// expected-error @+1 {{colossal-build-optimizer-step needs @micro_step (run colossal-autodiff first)}}
module {
  func.func @main() {
    return
  }
}

// -----

// expected-error @+1 {{has no trainable weight to optimise}}
func.func @micro_step() -> (tensor<f32> {colossal.name = "loss"}) {
  %c = colossal.constant dense<1.0> : tensor<f32>
  return %c : tensor<f32>
}

// -----

// Master weights are f32.
// expected-error @+1 {{trainable weight 'w' is 'bf16'; master weights must be f32}}
func.func @micro_step() -> (tensor<f32> {colossal.name = "loss"}) {
  %w = colossal.weight "w" {trainable} : tensor<3xbf16>
  %c = colossal.constant dense<1.0> : tensor<f32>
  return %c : tensor<f32>
}
