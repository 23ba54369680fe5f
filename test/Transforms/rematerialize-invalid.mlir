// RUN: colossal-opt %s --colossal-rematerialize="budget-bytes=100 device-profile=%t.missing.json" --verify-diagnostics

// A device profile that cannot be read is an error naming the file.
// expected-error @+1 {{colossal-rematerialize: cannot read the device profile}}
func.func @missing_profile() {
  return
}
