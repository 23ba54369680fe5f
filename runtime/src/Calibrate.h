//===- Calibrate.h - Measure the device profile the cost model uses -*- C++ -*-===//
//
// Internal to the runtime. `colossal-run --calibrate FILE` measures, on the
// machine it runs on, every rate of a device profile (devices/h200.json's
// format, docs/planner.md "Device profiles"), and writes the profile that
// `colossal-opt compile --device-profile FILE` reads:
//
//   CPU   (Calibrate.cpp)       the runtime's own AdamW host kernel on all
//                               cores, host memory, the CPU model
//   GPU   (cuda/Calibrate.cu)   GEMM rates through the CUDA backend's
//                               cuBLASLt path, HBM, pinned PCIe both ways and
//                               both at once, per-copy cost, launch floor,
//                               device memory, the GPU name
//
// The GPU half registers itself from the CUDA objects (as the CUDA backend
// does), so colossal_runtime never depends on CUDA. Without it (a CPU-only
// build, no GPU visible, or --device cpu) the GPU fields are copied from a
// base profile, and the profile's name and notes say so.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CALIBRATE_H
#define COLOSSAL_RUNTIME_CALIBRATE_H

#include "colossal/runtime/Status.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace colossal::runtime {

/// One measured GEMM class of a device profile's `gemm_tflops`.
struct GemmClassRate {
  std::string dtype;    ///< "bf16", "f16", "f32"
  std::string label;    ///< "large", "medium", "small", "any"
  uint64_t minDim = 0;  ///< the least min(M, N, K) of the class
  double tflops = 0;    ///< median over the class's shapes
  std::string shapes;   ///< what was timed, for the notes
};

/// What the GPU half measures: every GPU field of a profile.
struct GpuCalibration {
  std::string gpuName;
  uint64_t deviceMemoryBytes = 0; ///< cudaMemGetInfo total
  double hbmBytesPerS = 0;        ///< read + written, device-to-device copy
  double kernelFloorS = 0;        ///< enqueue cost of a one-element kernel
  std::vector<GemmClassRate> gemm;
  double h2dBytesPerS = 0, d2hBytesPerS = 0;
  double bidirectionalBytesPerS = 0; ///< both at once, two streams, in total
  double h2dCopyS = 0, d2hCopyS = 0; ///< per small copy, each direction
  std::vector<std::string> notes;    ///< how each figure was measured
};

/// Calibration settings (colossal-run --calibrate).
struct CalibrateOptions {
  bool useGpu = true;      ///< false: --device cpu
  std::string basePath;    ///< where GPU fields come from without a GPU
  /// Parameters of the timed AdamW (COLOSSAL_CALIBRATE_ADAMW_PARAMS; the
  /// default, 64 Mi, moves 1.75 GiB per update).
  int64_t adamwParams = int64_t{64} << 20;
  std::FILE *progress = stderr; ///< one line per measurement; null: quiet
};

/// The GPU half; fills `out` or returns kUnsupported when no GPU is usable.
using GpuCalibrator = Status (*)(const CalibrateOptions &opts,
                                 GpuCalibration &out);
/// Registers the GPU half (cuda/Calibrate.cu, from a static initializer).
void registerGpuCalibrator(GpuCalibrator calibrator);

/// Measures and writes the profile to `path`. The file is opened before
/// anything is measured, so an unwritable path fails at once; a base
/// profile that is needed is read before measuring too. Errors name the
/// file or the field.
Status calibrateToFile(const CalibrateOptions &opts, const std::string &path);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_CALIBRATE_H
