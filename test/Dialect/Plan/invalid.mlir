// RUN: colossal-opt %s --split-input-file --verify-diagnostics

func.func @alignment() {
  // expected-error @+1 {{requires a power-of-two alignment, got 48}}
  %b = cplan.buffer.alloc device size(64) align(48)
  return
}

// -----

func.func @live_order() {
  // expected-error @+1 {{requires 0 <= live first <= last, got [7, 3]}}
  %b = cplan.buffer.alloc device size(64) align(64) live([7, 3])
  return
}

// -----

func.func @misaligned_offset() {
  // expected-error @+1 {{requires a non-negative offset aligned to 64, got 32}}
  %b = cplan.buffer.alloc device size(64) align(64) offset(32)
  return
}

// -----

func.func @view_past_buffer() {
  %b = cplan.buffer.alloc device size(64) align(64)
  // expected-error @+1 {{view of 64 bytes at 16 exceeds its buffer of 64 bytes}}
  %v = cplan.view %b[16] : memref<16xf32>
  return
}

// -----

func.func @unknown_kernel() {
  %b = cplan.buffer.alloc device size(64) align(64)
  %v = cplan.view %b[0] : memref<16xf32>
  // expected-error @+1 {{names no op-table kernel: 'frobnicate'}}
  cplan.kernel "frobnicate" ins(%v : memref<16xf32>) outs(%v : memref<16xf32>) params {} stream(0)
  return
}

// -----

func.func @kernel_output_type() {
  %b = cplan.buffer.alloc device size(64) align(64)
  %v = cplan.view %b[0] : memref<16xf32>
  %w = cplan.view %b[0] : memref<4xf32>
  // expected-error @+1 {{output #0 must be 16xf32, got 'memref<4xf32>'}}
  cplan.kernel "relu" ins(%v : memref<16xf32>) outs(%w : memref<4xf32>) params {} stream(0)
  return
}

// -----

func.func @bad_stream() {
  // expected-error @+1 {{requires a stream in [0, 64), got 99}}
  cplan.event.record 0 stream(99)
  return
}

// -----

func.func @bad_event() {
  // expected-error @+1 {{requires an event in [0, 1048576), got -1}}
  cplan.event.wait -1 stream(0)
  return
}

// -----

func.func @constant_without_value() {
  %b = cplan.buffer.alloc device size(64) align(64)
  %v = cplan.view %b[0] : memref<16xf32>
  // expected-error @+1 {{requires a value for a constant binding}}
  cplan.bind constant "c" %v : memref<16xf32>
  return
}

// -----

func.func @input_with_value() {
  %b = cplan.buffer.alloc device size(64) align(64)
  %v = cplan.view %b[0] : memref<16xf32>
  // expected-error @+1 {{must not have a value for a input binding}}
  cplan.bind input "x" %v {value = dense<0.0> : tensor<16xf32>} : memref<16xf32>
  return
}

// -----

// A copy's source and target have one type (the syntax names it once).
func.func @copy_types() {
  %b = cplan.buffer.alloc device size(64) align(64)
  %v = cplan.view %b[0] : memref<16xf32>
  // expected-note @+1 {{prior use here}}
  %w = cplan.view %b[0] : memref<8xf32>
  // expected-error @+1 {{use of value '%w' expects different type than prior uses}}
  cplan.copy %v to %w stream(0) : memref<16xf32>
  return
}

// -----

// Negative sizes and offsets are caught (I64Attr getters are unsigned).
func.func @negative_size() {
  // expected-error @+1 {{requires a non-negative size, got -64}}
  %b = cplan.buffer.alloc device size(-64) align(64)
  return
}

// -----

func.func @negative_view_offset() {
  %b = cplan.buffer.alloc device size(64) align(64)
  // expected-error @+1 {{requires a non-negative byte offset, got -4}}
  %v = cplan.view %b[-4] : memref<4xf32>
  return
}
