//===- FusedJit.h - fused_elementwise programs compiled to CUDA -*- C++ -*-===//
//
// Internal to the CUDA backend. COLOSSAL_CUDA_FUSED=jit turns each
// fused_elementwise program the packed kernel runs (every value an f32,
// bf16 or f16 float or a bool: FusedKernelProgram::fast) into CUDA C of its
// own when the plan is prepared: the records become straight-line float
// code, every input's offset (i / div) % mod with its constants written in
// (so the divisions are multiplications), and NVRTC compiles it for the
// device. The code computes what the packed kernel computes, record by
// record: the same float operations in the same order, each result rounded
// to its record's dtype the same way, compiled like the rest of the
// backend without contraction (--fmad=false). Programs the packed kernel
// does not take, and every program when NVRTC cannot be loaded, stay on
// the interpreters.
//
// NVRTC is opened at run time (dlopen of libnvrtc.so.13, or the path in
// COLOSSAL_NVRTC), so a machine without it still runs every plan.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_CUDA_FUSEDJIT_H
#define COLOSSAL_RUNTIME_CUDA_FUSEDJIT_H

#include "FusedElementwise.h"

#include "colossal/runtime/Status.h"

#include <map>
#include <memory>
#include <string>

namespace colossal::runtime::cuda {

/// The CUDA C of one program: `extern "C" __global__ void colossal_fused(
/// const void *in0, ..., void *out)`, one element a thread over a
/// grid-stride loop; 32-bit indices when the result has fewer than 2^31
/// elements. `program.fast` must hold. Outside NVRTC (no __CUDACC_RTC__)
/// the f16 conversions use _Float16, so that a host compiler given shims
/// for the CUDA builtins runs the same code (runtime-CudaFusedJitTest).
std::string fusedKernelSource(const FusedKernelProgram &program);

/// NVRTC, opened once per process. Null with `why` set when the library or
/// one of its functions cannot be found.
class Nvrtc {
public:
  static const Nvrtc *get(std::string &why);
  /// Compiles `source` for `arch` ("compute_90") to PTX, with the backend's
  /// floating-point flags (--fmad=false, IEEE division and square root).
  /// On failure the status carries NVRTC's log.
  Status compileToPtx(const std::string &source, const std::string &arch,
                      std::string &ptx) const;

  struct Api;

private:
  explicit Nvrtc(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

/// The compiled kernels of one backend, by source text: the layers of a
/// model share their programs, so a 1.3b plan's 637 fused instructions
/// compile a few dozen kernels.
class FusedJit {
public:
  FusedJit();
  ~FusedJit();
  FusedJit(const FusedJit &) = delete;
  FusedJit &operator=(const FusedJit &) = delete;

  /// Compiles (or finds) the kernel of `program` for the current device
  /// and records it in `program.jit`. Returns an error only for a failed
  /// compile of code we generated (a bug); `available()` false (no NVRTC)
  /// is not an error and leaves `program.jit` null.
  Status prepare(FusedKernelProgram &program);
  bool available() const { return nvrtc_ != nullptr; }
  const std::string &unavailableReason() const { return why_; }

  /// Launches `program.jit` (prepared above) on `inputs` -> `out`.
  static cudaError_t launch(cudaStream_t stream,
                            const FusedKernelProgram &program,
                            const void *const *inputs, void *out);

  size_t kernels() const { return kernels_.size(); }
  double compileSeconds() const { return compileSeconds_; }

private:
  struct Kernel;
  const Nvrtc *nvrtc_ = nullptr;
  std::string why_, arch_;
  std::map<std::string, std::unique_ptr<Kernel>> kernels_;
  double compileSeconds_ = 0;
};

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_FUSEDJIT_H
