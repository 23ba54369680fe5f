// RUN: colossal-opt %s --split-input-file --colossal-lower-to-plan --verify-diagnostics

// Graph arguments must carry their ONNX names.
// expected-error @+1 {{argument #0 has no colossal.name}}
func.func @unnamed(%x: tensor<2xf32>) -> (tensor<2xf32> {colossal.name = "y"}) {
  return %x : tensor<2xf32>
}

// -----

// A constant larger than max-constant-bytes is refused (the importer keeps
// large computations as ops).
func.func @huge_constant() -> (tensor<300000xf32> {colossal.name = "y"}) {
  // expected-error @+1 {{constant of 1200000 bytes exceeds max-constant-bytes (1048576)}}
  %c = colossal.constant dense_resource<blob> : tensor<300000xf32>
  return %c : tensor<300000xf32>
}
