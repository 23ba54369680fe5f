//===- SanitizerOptions.cpp - ASan/UBSan defaults of the fuzz build -------===//
//
// Linked into every executable of a COLOSSAL_ENABLE_FUZZERS build (through
// the instrumented libraries' interface), so the fuzzers, colossal-opt and
// the unit tests of that build run the same way with or without the options
// scripts/fuzz.sh passes. ASAN_OPTIONS / UBSAN_OPTIONS still override each.
//
// allow_user_poisoning=0: LLVM's BumpPtrAllocator (Allocator.h) poisons its
// free slab space when the including file is compiled with ASan. Our files
// are; Debian's static MLIR libraries are not, and the two inline copies of
// the allocator then disagree: MLIR code hands out bytes that our copy
// poisoned, and ASan reports a use-after-poison on the first MLIRContext.
// Ignoring manual poisoning keeps every other ASan check.
//
// halt_on_error=1: a UBSan report is a finding; stop there so that libFuzzer
// saves the input (the checks stay recoverable, so UBSAN_OPTIONS can still
// suppress a known report while its fix is pending).
//
//===----------------------------------------------------------------------===//

extern "C" const char *__asan_default_options() {
  return "allow_user_poisoning=0";
}

extern "C" const char *__ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}
