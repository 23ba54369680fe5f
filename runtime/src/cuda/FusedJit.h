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
// backend without contraction (--fmad=false). Where the element count is
// a multiple of V (8, or 4 when every full-size operand is f32) the source
// has a second, vector kernel: V elements a thread, the contiguous
// operands moved in 16-byte (8-, 4-byte) accesses, operands constant over
// the V elements loaded once; the launch takes it when the pointers are
// aligned (fusedVectorPlan). Programs the packed kernel does not take,
// and every program when NVRTC cannot be loaded, stay on the
// interpreters.
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

/// How the vector form of a program's kernel reads its inputs: V
/// (`width`) consecutive elements a thread, from i0 = a multiple of V.
struct FusedVectorPlan {
  /// V: 8, or 4 when the result and every input laid out as the result
  /// are f32; 0: no vector form (the element count is not a multiple of
  /// V, or the program is not `fast`).
  int width = 0;
  enum Mode : int8_t {
    kLanes,   ///< an offset per lane, as the scalar kernel computes it
    kVector,  ///< V consecutive elements (div 1, mod 0 or a multiple of V)
              ///< in aligned 4-, 8- or 16-byte loads
    kUniform, ///< one element for all lanes (a scalar, div a multiple of
              ///< V, or a strided input broadcast along the innermost dim)
    kStep,    ///< a strided input: one walk, then + lane x innermost stride
  };
  Mode mode[kMaxFusedInputs] = {};
  /// The alignment each pointer needs for the vector kernel to run (0:
  /// any): min(16, V x element bytes) for the result and kVector inputs.
  int inAlignBytes[kMaxFusedInputs] = {};
  int outAlignBytes = 0;
};

/// The vector plan of `program`; width 0 when it has none.
FusedVectorPlan fusedVectorPlan(const FusedKernelProgram &program);

/// The CUDA C of one program: `extern "C" __global__ void colossal_fused(
/// const void *in0, ..., void *out)`, one element a thread over a
/// grid-stride loop; 32-bit indices when the result has fewer than 2^31
/// elements. When fusedVectorPlan gives a width, a second kernel follows,
/// `colossal_fused_vec` (same parameters): V elements a thread, 16-byte
/// (or 8- or 4-byte) loads and stores of the contiguous operands, the
/// per-element float code the same as the scalar kernel's for each lane.
/// `program.fast` must hold. Outside NVRTC (no __CUDACC_RTC__)
/// the f16 conversions use _Float16, so that a host compiler given shims
/// for the CUDA builtins (and uint2/uint4) runs the same code
/// (runtime-CudaFusedJitTest).
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

  /// Compiles (or finds) the kernels of `program` for the current device
  /// and records them in `program.jit` (a FusedJit::Kernel, owned here). Returns an error only for a failed
  /// compile of code we generated (a bug); `available()` false (no NVRTC)
  /// is not an error and leaves `program.jit` null.
  Status prepare(FusedKernelProgram &program);
  bool available() const { return nvrtc_ != nullptr; }
  const std::string &unavailableReason() const { return why_; }

  /// Launches `program.jit` (prepared above) on `inputs` -> `out`: the
  /// vector kernel when the program has one and every pointer has the
  /// alignment its plan asks, else the scalar kernel.
  static cudaError_t launch(cudaStream_t stream,
                            const FusedKernelProgram &program,
                            const void *const *inputs, void *out);

  size_t kernels() const { return kernels_.size(); }
  double compileSeconds() const { return compileSeconds_; }

private:
  struct Kernel;
  const Nvrtc *nvrtc_ = nullptr;
  std::string why_, arch_;
  int smCount_ = 0; ///< caps the vector kernel's grid (0: unknown)
  std::map<std::string, std::unique_ptr<Kernel>> kernels_;
  double compileSeconds_ = 0;
};

} // namespace colossal::runtime::cuda

#endif // COLOSSAL_RUNTIME_CUDA_FUSEDJIT_H
