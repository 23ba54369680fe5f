//===- Compile.h - The compile and import subcommands -----------*- C++ -*-===//
#ifndef COLOSSAL_TOOLS_COMPILE_H
#define COLOSSAL_TOOLS_COMPILE_H

namespace mlir::colossal {
/// `colossal-opt compile ...`: argv[0] is "compile". Returns the exit code.
int runCompile(int argc, char **argv);
/// `colossal-opt import ...`: prints the imported graph MLIR.
int runImport(int argc, char **argv);
} // namespace mlir::colossal

#endif // COLOSSAL_TOOLS_COMPILE_H
