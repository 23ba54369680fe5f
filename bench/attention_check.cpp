//===- attention_check.cpp - Fused attention on the GPU vs the CPU --------===//
//
// Run on the GPU machine (bench/attention_check.sh builds and runs it):
//  1. correctness: attention and attention_grad through the CUDA backend
//     against the CPU reference (runCpuKernel, f64) on many shapes: GQA and
//     MQA, causal (S = T and S < T), additive biases of several broadcast
//     shapes, S != T, D in {32, 64, 128} and odd D, f32 and bf16. Outputs
//     are poisoned (0xFF, NaN) first. Error is norm-wise, max |gpu - cpu| /
//     max |cpu| per output: fp32 accumulation against f64 gives ~1e-6 for
//     f32 (tolerance 1e-4), bf16 rounding of inputs-as-stored and outputs
//     ~4e-3 (tolerance 2e-2). Every case runs on the SIMT kernel
//     (COLOSSAL_ATTENTION_KERNEL=simple) and, where it applies (bf16/f16,
//     D 64, 80, 96 or 128: AttentionTC.h), on the tensor-core kernels:
//      - "tc": the fused backward (dq summed with atomics; forced with
//        COLOSSAL_ATTENTION_KERNEL=fused, as auto takes it for D 64, 80
//        and 128) on the default blocks;
//      - "tc-chunk": the same with the dq sums' scratch cut to one batch's
//        heads (a launch per batch), 64 query rows a step at D 64
//        (COLOSSAL_ATTENTION_BWD_ROWS; the default is 32) and the kernels
//        without the four-blocks-an-SM bound (COLOSSAL_ATTENTION_OCCUPANCY);
//      - "tc-det": the two-pass deterministic backward, which (as the SIMT
//        one) runs twice and must give the same bits, and whose dk and dv
//        must equal the fused backward's bit for bit (the same loop
//        computes them).
//      - COLOSSAL_ATTENTION_BLOCK's blocks, each forced (AttentionTC.cu):
//        "tc-b64" (session 5's kernels, fused), "tc-b64s", "tc-b128"
//        (also "tc-b128c", its dq sums cut to one batch's heads, and
//        "tc-det128", its two-pass backward, deterministic and with dk,
//        dv equal to tc-b128's), "tc-b128t".
//     And "cudnn" (COLOSSAL_ATTENTION_KERNEL=cudnn, AttentionCudnn.h):
//     cuDNN 9's fused flash attention, for the cases it takes (bf16/f16,
//     no bias, D a multiple of 8 up to 128, causal only with S <= T); a
//     case it does not take prints "cudnn skipped (why)", as does every
//     case when cuDNN cannot load. A case it takes fails when the backend
//     fell back to our kernels (cudnnAttentionCallsRun did not advance by
//     the forward and backward calls). Not yet run on a GPU.
//  2. timing: the OPT-1.3b-like shape (B 8, H 32, S 1024, D 64, bf16,
//     causal) and the same at D 128 and 80, fused on each kernel (simple;
//     tc: the defaults; tc-det: the two-pass backward at the default
//     blocks; tc-b64, tc-det64: session 5's fused and two-pass kernels;
//     tc-r64: the fused backward at 64 rows a step, tc-occ3: the D 64
//     kernels without the four-blocks-an-SM bound, both on the 64 blocks;
//     tc-b64s, tc-b128, tc-det128, tc-b128t: the other blocks; tc and
//     tc-b64 twice, for the spread; cudnn, cuDNN's fused attention, twice
//     as well, or "skipped (why)"), against the
//     unfused ops the compiler emits without colossal-fuse-attention
//     (matmul, mul, add mask, softmax, matmul; and the backward's four
//     matmuls and softmax gradient), each through the same backend.
//     Wall-clock per call after warm-up, synchronised. TFLOP/s counts
//     4 B H S T D / 2 for a causal forward (half the products) and 2.5
//     times that for the backward (five products to the forward's two).
//
// Prints one line per case and "attention_check: N cases, F failed";
// exits 1 when any case fails. --no-timing: the cases only;
// --timing-only: the timings only (for a profiler's run).
//
//===----------------------------------------------------------------------===//
#include "Backend.h"
#include "cuda/AttentionCudnn.h"
#include "cuda/AttentionTC.h"

#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace colossal::runtime;
using Dims = std::vector<int64_t>;

namespace {

std::unique_ptr<Backend> gpu;

HostTensor random(DType dtype, const Dims &dims, std::mt19937 &gen,
                  double lo = -1.0, double hi = 1.0) {
  HostTensor t(TensorType{dtype, dims});
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < t.type.numElements(); ++i)
    storeFromDouble(t.ref(), i, dist(gen));
  return t;
}

bool check(const Status &st, const char *what) {
  if (st.isOk())
    return true;
  std::printf("  %s: %s\n", what, st.message().c_str());
  return false;
}

/// Runs one op on the GPU on host inputs; outputs come back to the host.
bool runGpu(const Attrs &attrs, const std::vector<HostTensor> &inputs,
            std::vector<HostTensor> &outputs) {
  std::vector<TensorType> inTypes, outTypes;
  for (const HostTensor &t : inputs)
    inTypes.push_back(t.type);
  if (!check(inferOutputTypes(attrs, inTypes, outTypes), "types"))
    return false;
  uint64_t size = 256;
  std::vector<uint64_t> at;
  auto place = [&](uint64_t bytes) {
    at.push_back(size);
    size += (bytes + 255) / 256 * 256 + 256;
  };
  for (const HostTensor &t : inputs)
    place(t.bytes.size());
  for (const TensorType &t : outTypes)
    place(t.sizeBytes());
  PlanArena arena;
  arena.sizeBytes = size;
  arena.alignBytes = 256;
  if (!check(gpu->allocateArenas({arena}), "arena"))
    return false;
  uint8_t *base = gpu->arenaBase(0);
  if (!check(gpu->fill(base, 0xff, size), "poison"))
    return false;
  std::vector<TensorRef> ins, outs;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!check(gpu->upload(base + at[k], inputs[k].bytes.data(),
                           inputs[k].bytes.size()),
               "upload"))
      return false;
    ins.push_back(TensorRef{inputs[k].type, base + at[k]});
  }
  for (size_t k = 0; k < outTypes.size(); ++k)
    outs.push_back(TensorRef{outTypes[k], base + at[inputs.size() + k]});
  PlanInstr instr;
  instr.attrs = attrs;
  uint64_t failed = 0;
  if (!check(gpu->run(0, instr, ins, outs), "run") ||
      !check(gpu->synchronize(&failed), "synchronize"))
    return false;
  outputs.clear();
  for (size_t k = 0; k < outTypes.size(); ++k) {
    outputs.emplace_back(outTypes[k]);
    if (!check(gpu->download(outputs.back().bytes.data(), outs[k].data,
                             outputs.back().bytes.size()),
               "download"))
      return false;
  }
  return true;
}

/// Norm-wise error of `got` against `want`: max |d| / max(max |want|, 1e-3);
/// infinite when the finiteness of any element differs. The floor: dq and dk
/// of a row whose softmax has one element are exactly 0 (its gradient
/// vanishes) while a GPU computes dP - delta with rounding (~1e-8); the
/// inputs are O(1), so the gradients elsewhere are 0.1-1 and 1e-3 keeps the
/// measure relative where it matters (1e-30 gave 1.5e22 on the H200).
double normwiseError(const HostTensor &want, const HostTensor &got) {
  double worst = 0.0, scale = 0.0;
  for (int64_t i = 0; i < want.type.numElements(); ++i) {
    double w = loadAsDouble(want.ref(), i), g = loadAsDouble(got.ref(), i);
    if (std::isinf(w) && w == g)
      continue; // lse of a closed row
    if (std::isfinite(w) != std::isfinite(g))
      return INFINITY;
    scale = std::max(scale, std::fabs(w));
    worst = std::max(worst, std::fabs(w - g));
  }
  return worst / std::max(scale, 1e-3);
}

struct Case {
  const char *name;
  DType dtype;
  int64_t b, h, hkv, s, t, d;
  bool causal;
  Dims bias; ///< empty: none
};

int failures = 0, cases = 0;

/// Picks the kernel the backend runs for attention (AttentionTC.h reads
/// the variable at every call).
void useKernel(const char *which) {
  setenv("COLOSSAL_ATTENTION_KERNEL", which, 1);
}

/// True when both outputs lists have the same bytes.
bool sameBits(const std::vector<HostTensor> &x,
              const std::vector<HostTensor> &y) {
  if (x.size() != y.size())
    return false;
  for (size_t k = 0; k < x.size(); ++k)
    if (x[k].bytes != y[k].bytes)
      return false;
  return true;
}

void compareCase(const Case &c, const char *kernel,
                 const std::vector<HostTensor> &in,
                 const std::vector<HostTensor> &gin,
                 const std::vector<HostTensor> &cpuOut,
                 const std::vector<HostTensor> &cpuGrad, const Attrs &fwd,
                 const Attrs &bwd, std::vector<HostTensor> *grads = nullptr);

/// Whether the backend's attention calls for this case's shape take the
/// tensor-core path here (device, environment), asked with pointers as
/// aligned as runGpu's arena places them and ample scratch.
bool tensorCoresTaken(const Case &c) {
  cuda::AttentionCall call{};
  call.dtype = c.dtype;
  call.batch = c.b, call.heads = c.h, call.kvHeads = c.hkv;
  call.rows = c.s, call.cols = c.t, call.depth = c.d;
  void *at = reinterpret_cast<void *>(uintptr_t{256});
  call.q = call.k = call.v = call.out = call.dout = at;
  call.o = call.dq = call.dk = call.dv = call.scratch = at;
  call.scratchBytes = SIZE_MAX;
  return cuda::attentionUsesTensorCores(call, false) &&
         cuda::attentionUsesTensorCores(call, true);
}

/// Why the cuDNN path does not take this shape ("" when it does), cuDNN's
/// loading included.
std::string cudnnSkipReason(DType dtype, int64_t b, int64_t h, int64_t hkv,
                            int64_t s, int64_t t, int64_t d, bool causal,
                            bool bias) {
  std::string why;
  int64_t version = cuda::cudnnLoadedVersion(&why);
  if (version == 0)
    return "cuDNN unavailable: " + why;
  for (bool backward : {false, true}) {
    cuda::CudnnSdpaShape shape;
    shape.dtype = dtype;
    shape.batch = b, shape.heads = h, shape.kvHeads = hkv;
    shape.rows = s, shape.cols = t, shape.depth = d;
    shape.causal = causal, shape.hasBias = bias, shape.backward = backward;
    std::string reason = cuda::cudnnSdpaUnsupportedReason(shape, version);
    if (!reason.empty())
      return reason;
  }
  return "";
}

/// The "cudnn" row of a case: cuDNN's fused attention against the CPU, or
/// a line saying why it was skipped.
void runCudnnCase(const Case &c, const std::vector<HostTensor> &in,
                  const std::vector<HostTensor> &gin,
                  const std::vector<HostTensor> &cpuOut,
                  const std::vector<HostTensor> &cpuGrad, const Attrs &fwd,
                  const Attrs &bwd) {
  std::string why = cudnnSkipReason(c.dtype, c.b, c.h, c.hkv, c.s, c.t, c.d,
                                    c.causal, !c.bias.empty());
  if (!why.empty()) {
    std::printf("%-28s cudnn  skipped (%s)\n", c.name, why.c_str());
    return;
  }
  ++cases;
  useKernel("cudnn");
  uint64_t before = cuda::cudnnAttentionCallsRun();
  int failedBefore = failures;
  compareCase(c, "cudnn", in, gin, cpuOut, cpuGrad, fwd, bwd);
  uint64_t ran = cuda::cudnnAttentionCallsRun() - before;
  useKernel("auto");
  if (ran < 2 && failures == failedBefore) {
    ++failures;
    std::printf("%-28s cudnn  FAIL (cuDNN ran %llu of the 2 calls; our "
                "kernels ran the rest: see the line on stderr)\n",
                c.name, static_cast<unsigned long long>(ran));
  }
}

void runCase(const Case &c, std::mt19937 &gen) {
  ++cases;
  Dims qd{c.b, c.h, c.s, c.d}, kd{c.b, c.hkv, c.t, c.d};
  std::vector<HostTensor> in = {random(c.dtype, qd, gen),
                                random(c.dtype, kd, gen),
                                random(c.dtype, kd, gen)};
  if (!c.bias.empty())
    in.push_back(random(c.dtype, c.bias, gen, -3.0, 1.0));
  Attrs fwd(OpKind::Attention), bwd(OpKind::AttentionGrad);
  double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  for (Attrs *a : {&fwd, &bwd}) {
    a->setF("scale", scale);
    a->setI("causal", c.causal);
  }
  std::vector<HostTensor> cpuOut, cpuGrad;
  if (!check(evaluateOp(fwd, in, cpuOut), "cpu forward")) {
    ++failures;
    return;
  }
  // The backward of both runs on the CPU forward's results, so that the
  // gradients compare kernels, not forwards.
  std::vector<HostTensor> gin = in;
  gin.push_back(cpuOut[0]);
  gin.push_back(cpuOut[1]);
  gin.push_back(random(c.dtype, qd, gen));
  if (!check(evaluateOp(bwd, gin, cpuGrad), "cpu backward")) {
    ++failures;
    return;
  }
  useKernel("simple");
  compareCase(c, "simple", in, gin, cpuOut, cpuGrad, fwd, bwd);
  useKernel("auto");
  runCudnnCase(c, in, gin, cpuOut, cpuGrad, fwd, bwd);
  if (!cuda::attentionTensorCoreShape(c.dtype, c.d))
    return;
  ++cases;
  if (!tensorCoresTaken(c)) {
    ++failures;
    std::printf("%-28s tc     FAIL (the tensor-core path was not taken)\n",
                c.name);
    return;
  }
  // The fused backward (dq by atomics), the same with the dq sums' scratch
  // at its least (one batch's heads: a launch per batch), and the two-pass
  // deterministic one.
  std::vector<HostTensor> fused, det;
  useKernel("fused");
  compareCase(c, "tc", in, gin, cpuOut, cpuGrad, fwd, bwd, &fused);
  // tc-chunk also takes 64 query rows a step at D 64 (the default is 32)
  // and the kernels without the four-blocks-an-SM bound.
  // (and session 5's 64-row blocks, which the last two apply to).
  setenv("COLOSSAL_ATTENTION_DQ_SCRATCH", "1", 1);
  setenv("COLOSSAL_ATTENTION_BWD_ROWS", "64", 1);
  setenv("COLOSSAL_ATTENTION_OCCUPANCY", "3", 1);
  setenv("COLOSSAL_ATTENTION_BLOCK", "64", 1);
  compareCase(c, "tc-chunk", in, gin, cpuOut, cpuGrad, fwd, bwd);
  unsetenv("COLOSSAL_ATTENTION_BLOCK");
  unsetenv("COLOSSAL_ATTENTION_DQ_SCRATCH");
  unsetenv("COLOSSAL_ATTENTION_BWD_ROWS");
  unsetenv("COLOSSAL_ATTENTION_OCCUPANCY");
  useKernel("deterministic");
  compareCase(c, "tc-det", in, gin, cpuOut, cpuGrad, fwd, bwd, &det);
  // dk and dv come from the same loop on both paths: the same bits.
  auto sameDkDv = [&](const char *which) {
    if (fused.size() == 3 && det.size() == 3 &&
        (fused[1].bytes != det[1].bytes || fused[2].bytes != det[2].bytes)) {
      ++failures;
      std::printf("%-28s %-6s FAIL (dk, dv differ between the fused and the "
                  "deterministic backward)\n",
                  c.name, which);
    }
  };
  sameDkDv("tc");
  // Each block shape of COLOSSAL_ATTENTION_BLOCK (AttentionTC.cu; D 64
  // and 128, the others take the 64 blocks whatever it says): tc-b64,
  // session 5's kernels; tc-b64s, the same blocks scheduled over the whole
  // grid with lse and delta by cp.async (D 64); tc-b128, 8 warps and 128
  // query rows or keys a block, fused, and tc-det128 the same with the
  // two-pass backward (bits repeat; dk, dv equal to tc-b128's).
  setenv("COLOSSAL_ATTENTION_BLOCK", "64", 1);
  useKernel("fused");
  compareCase(c, "tc-b64", in, gin, cpuOut, cpuGrad, fwd, bwd);
  setenv("COLOSSAL_ATTENTION_BLOCK", "64s", 1);
  compareCase(c, "tc-b64s", in, gin, cpuOut, cpuGrad, fwd, bwd);
  // tc-b128t: two 16-row (forward) or 16-key (dk/dv) tiles a warp (D 64).
  setenv("COLOSSAL_ATTENTION_BLOCK", "128t", 1);
  compareCase(c, "tc-b128t", in, gin, cpuOut, cpuGrad, fwd, bwd);
  setenv("COLOSSAL_ATTENTION_BLOCK", "128", 1);
  fused.clear();
  det.clear();
  compareCase(c, "tc-b128", in, gin, cpuOut, cpuGrad, fwd, bwd, &fused);
  // With the dq sums cut to one batch's heads too (a launch per batch).
  setenv("COLOSSAL_ATTENTION_DQ_SCRATCH", "1", 1);
  compareCase(c, "tc-b128c", in, gin, cpuOut, cpuGrad, fwd, bwd);
  unsetenv("COLOSSAL_ATTENTION_DQ_SCRATCH");
  useKernel("deterministic");
  compareCase(c, "tc-det128", in, gin, cpuOut, cpuGrad, fwd, bwd, &det);
  sameDkDv("tc-b128");
  unsetenv("COLOSSAL_ATTENTION_BLOCK");
  useKernel("auto");
}

void compareCase(const Case &c, const char *kernel,
                 const std::vector<HostTensor> &in,
                 const std::vector<HostTensor> &gin,
                 const std::vector<HostTensor> &cpuOut,
                 const std::vector<HostTensor> &cpuGrad, const Attrs &fwd,
                 const Attrs &bwd, std::vector<HostTensor> *grads) {
  std::vector<HostTensor> gpuOut, gpuGrad, again;
  if (!runGpu(fwd, in, gpuOut)) {
    ++failures;
    std::printf("%-28s %-6s FAIL (forward did not run)\n", c.name, kernel);
    return;
  }
  if (!runGpu(bwd, gin, gpuGrad)) {
    ++failures;
    std::printf("%-28s %-6s FAIL (backward did not run)\n", c.name, kernel);
    return;
  }
  if (grads)
    *grads = gpuGrad;
  // The deterministic tensor-core backward (and the SIMT one) claim
  // determinism: a second run, same bits. The fused one sums dq with
  // atomics in no fixed order.
  bool deterministic = true;
  if (std::string(kernel).rfind("tc-det", 0) == 0 ||
      std::string(kernel) == "simple")
    deterministic = runGpu(bwd, gin, again) && sameBits(gpuGrad, again);
  double tol = c.dtype == DType::kF32 ? 1e-4 : 2e-2;
  const char *names[] = {"out", "lse", "dq", "dk", "dv"};
  double errs[5] = {normwiseError(cpuOut[0], gpuOut[0]),
                    normwiseError(cpuOut[1], gpuOut[1]),
                    normwiseError(cpuGrad[0], gpuGrad[0]),
                    normwiseError(cpuGrad[1], gpuGrad[1]),
                    normwiseError(cpuGrad[2], gpuGrad[2])};
  bool ok = deterministic;
  std::string detail = deterministic ? "" : " NOT DETERMINISTIC";
  for (int k = 0; k < 5; ++k) {
    // lse is f32 in every case and compared at f32's tolerance.
    double t = k == 1 ? 1e-4 : tol;
    ok &= errs[k] <= t;
    char buf[48];
    std::snprintf(buf, sizeof buf, " %s %.1e", names[k], errs[k]);
    detail += buf;
  }
  failures += !ok;
  std::printf("%-28s %-6s %-5s B%lld H%lld/%lld S%lld T%lld D%lld%s%s |%s  "
              "%s\n",
              c.name, kernel, dtypeName(c.dtype), (long long)c.b, (long long)c.h,
              (long long)c.hkv, (long long)c.s, (long long)c.t, (long long)c.d,
              c.causal ? " causal" : "", c.bias.empty() ? "" : " bias",
              detail.c_str(), ok ? "ok" : "FAIL");
}

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

/// Tensors placed in one arena for repeated runs.
struct Bench {
  uint8_t *base = nullptr;
  uint64_t size = 256;
  std::vector<std::pair<TensorType, uint64_t>> slots;
  int add(const TensorType &t) {
    slots.push_back({t, size});
    size += (t.sizeBytes() + 255) / 256 * 256 + 256;
    return static_cast<int>(slots.size()) - 1;
  }
  TensorRef ref(int k) const {
    return TensorRef{slots[k].first, base + slots[k].second};
  }
};

struct Step {
  Attrs attrs;
  std::vector<int> ins, outs;
};

/// Adds `attrs` on slots `ins` with new output slots; returns them.
std::vector<int> addStep(Bench &bench, std::vector<Step> &steps, Attrs attrs,
                         std::vector<int> ins) {
  std::vector<TensorType> types, outTypes;
  for (int k : ins)
    types.push_back(bench.slots[k].first);
  Status st = inferOutputTypes(attrs, types, outTypes);
  if (!st.isOk()) {
    std::printf("bench step: %s\n", st.message().c_str());
    std::exit(1);
  }
  std::vector<int> outs;
  for (const TensorType &t : outTypes)
    outs.push_back(bench.add(t));
  steps.push_back({attrs, ins, outs});
  return outs;
}

/// Milliseconds per run of `steps` (mean of `iters` after 3 warm-ups).
double timeSteps(Bench &bench, const std::vector<Step> &steps, int iters) {
  auto once = [&]() {
    for (const Step &s : steps) {
      std::vector<TensorRef> ins, outs;
      for (int k : s.ins)
        ins.push_back(bench.ref(k));
      for (int k : s.outs)
        outs.push_back(bench.ref(k));
      PlanInstr instr;
      instr.attrs = s.attrs;
      if (!check(gpu->run(0, instr, ins, outs), "bench run"))
        std::exit(1);
    }
    uint64_t failed = 0;
    if (!check(gpu->synchronize(&failed), "bench sync"))
      std::exit(1);
  };
  for (int i = 0; i < 3; ++i)
    once();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i)
    once();
  std::chrono::duration<double, std::milli> ms =
      std::chrono::steady_clock::now() - start;
  return ms.count() / iters;
}

void timeOptShape(int64_t b, int64_t h, int64_t s, int64_t d, DType dtype) {
  Bench bench;
  TensorType qt{dtype, {b, h, s, d}};
  int q = bench.add(qt), k = bench.add(qt), v = bench.add(qt),
      dout = bench.add(qt);
  int mask = bench.add(TensorType{dtype, {s, s}});
  int scale = bench.add(TensorType{dtype, {}});
  double sc = 1.0 / std::sqrt(static_cast<double>(d));
  // Fused.
  std::vector<Step> fusedF, fusedB;
  Attrs fa(OpKind::Attention), ga(OpKind::AttentionGrad);
  for (Attrs *a : {&fa, &ga}) {
    a->setF("scale", sc);
    a->setI("causal", 1);
  }
  std::vector<int> fo = addStep(bench, fusedF, fa, {q, k, v});
  addStep(bench, fusedB, ga, {q, k, v, fo[0], fo[1], dout});
  // Unfused, as autodiff writes it for the unfused graph.
  std::vector<Step> plainF, plainB;
  Attrs mmT(OpKind::MatMul);
  mmT.setI("transpose_b", 1);
  Attrs mmTa(OpKind::MatMul);
  mmTa.setI("transpose_a", 1);
  Attrs softmax(OpKind::Softmax);
  softmax.setI("axis", 3);
  Attrs rsum(OpKind::ReduceSum);
  rsum.setList("axes", {3});
  rsum.setI("keepdims", 1);
  int sc1 = addStep(bench, plainF, mmT, {q, k})[0];
  int sc2 = addStep(bench, plainF, Attrs(OpKind::Mul), {sc1, scale})[0];
  int sc3 = addStep(bench, plainF, Attrs(OpKind::Add), {sc2, mask})[0];
  int p = addStep(bench, plainF, softmax, {sc3})[0];
  addStep(bench, plainF, Attrs(OpKind::MatMul), {p, v});
  int dp = addStep(bench, plainB, mmT, {dout, v})[0];
  addStep(bench, plainB, mmTa, {p, dout}); // dv
  int t = addStep(bench, plainB, Attrs(OpKind::Mul), {dp, p})[0];
  int r = addStep(bench, plainB, rsum, {t})[0];
  int u = addStep(bench, plainB, Attrs(OpKind::Sub), {dp, r})[0];
  int ds = addStep(bench, plainB, Attrs(OpKind::Mul), {p, u})[0];
  int ds2 = addStep(bench, plainB, Attrs(OpKind::Mul), {ds, scale})[0];
  addStep(bench, plainB, Attrs(OpKind::MatMul), {ds2, k}); // dq
  addStep(bench, plainB, mmTa, {ds2, q});                  // dk

  PlanArena arena;
  arena.sizeBytes = bench.size;
  arena.alignBytes = 256;
  if (!check(gpu->allocateArenas({arena}), "bench arena"))
    std::exit(1);
  bench.base = gpu->arenaBase(0);
  std::mt19937 gen(3);
  for (int slot : {q, k, v, dout}) {
    HostTensor x = random(dtype, qt.dims, gen);
    check(gpu->upload(bench.ref(slot).data, x.bytes.data(), x.bytes.size()),
          "bench upload");
  }
  HostTensor m(TensorType{dtype, {s, s}});
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < s; ++j)
      storeFromDouble(m.ref(), i * s + j, j > i ? -3.4e38 : 0.0);
  check(gpu->upload(bench.ref(mask).data, m.bytes.data(), m.bytes.size()),
        "bench upload");
  HostTensor c(TensorType{dtype, {}});
  storeFromDouble(c.ref(), 0, sc);
  check(gpu->upload(bench.ref(scale).data, c.bytes.data(), c.bytes.size()),
        "bench upload");

  double flops = 4.0 * b * h * s * s * d / 2; // causal: half the products
  std::printf("timing %s B%lld H%lld S%lld D%lld causal (tc's blocks: "
              "forward %s, backward %s):\n",
              dtypeName(dtype), (long long)b, (long long)h, (long long)s,
              (long long)d, cuda::attentionBlock(d, s, false),
              cuda::attentionBlock(d, s, true));
  // tc: the defaults (COLOSSAL_ATTENTION_KERNEL=auto, every other
  // variable unset); tc-det: the two-pass backward at the default blocks.
  // COLOSSAL_ATTENTION_BLOCK's blocks (AttentionTC.cu): tc-b64 and
  // tc-det64, session 5's fused and two-pass kernels; tc-b64s, the 64
  // blocks scheduled over the whole grid (the forward at D 64 only);
  // tc-b128 and tc-det128, 8 warps and 128 rows or keys a block (D 64 and
  // 128); tc-b128t, 4 warps of two 16-row or 16-key tiles (D 64).
  // tc-r64 and tc-occ3 are session 5's A/Bs of the 64 blocks. tc and
  // tc-b64 are timed twice, a repeat that shows the spread.
  for (const char *kernel :
       {"simple", "cudnn", "tc", "tc-det", "tc-b64", "tc-det64", "tc-r64",
        "tc-occ3", "tc-b64s", "tc-b128", "tc-det128", "tc-b128t", "tc",
        "tc-b64", "cudnn"}) {
    std::string k = kernel;
    // cudnn: cuDNN's fused attention (COLOSSAL_ATTENTION_KERNEL=cudnn),
    // where it takes the shape; the count of calls it ran says whether the
    // backend fell back to our kernels.
    if (k == "cudnn") {
      std::string why = cudnnSkipReason(dtype, b, h, h, s, s, d, true, false);
      if (!why.empty()) {
        std::printf("  fused cudnn     skipped (%s)\n", why.c_str());
        continue;
      }
      useKernel("cudnn");
      uint64_t before = cuda::cudnnAttentionCallsRun();
      double f1 = timeSteps(bench, fusedF, 10);
      double b1 = timeSteps(bench, fusedB, 10);
      uint64_t ran = cuda::cudnnAttentionCallsRun() - before;
      useKernel("auto");
      std::printf("  fused %-9s forward %8.3f ms (%6.1f TFLOP/s)  backward "
                  "%8.3f ms (%6.1f TFLOP/s)%s\n",
                  kernel, f1, flops / f1 / 1e9, b1, 2.5 * flops / b1 / 1e9,
                  ran == 26 ? ""
                            : "  NOT ALL ON cuDNN (see stderr): not a "
                              "cuDNN timing");
      continue;
    }
    bool tc = k != "simple";
    bool det = k.rfind("tc-det", 0) == 0;
    useKernel(!tc ? "simple" : det ? "deterministic" : k == "tc" ? "auto"
                                                                  : "fused");
    if ((k == "tc-b128" || k == "tc-det128") && d != 64 && d != 128)
      continue;
    if (k == "tc-b64" || k == "tc-det64" || k == "tc-r64" || k == "tc-occ3")
      setenv("COLOSSAL_ATTENTION_BLOCK", "64", 1);
    else if (k == "tc-b64s")
      setenv("COLOSSAL_ATTENTION_BLOCK", "64s", 1);
    else if (k == "tc-b128" || k == "tc-det128")
      setenv("COLOSSAL_ATTENTION_BLOCK", "128", 1);
    else if (k == "tc-b128t") {
      if (d != 64)
        continue;
      setenv("COLOSSAL_ATTENTION_BLOCK", "128t", 1);
    }
    // tc-r64: the fused backward with 64 query rows a step at D 64
    // (COLOSSAL_ATTENTION_BWD_ROWS, AttentionTC.cu; 32 by default), an A/B.
    if (k == "tc-r64") {
      if (d > 64)
        continue;
      setenv("COLOSSAL_ATTENTION_BWD_ROWS", "64", 1);
    }
    // tc-occ3: the D <= 64 kernels without the four-blocks-an-SM bound
    // (COLOSSAL_ATTENTION_OCCUPANCY=3, AttentionTC.cu), an A/B.
    if (k == "tc-occ3") {
      if (d > 64)
        continue;
      setenv("COLOSSAL_ATTENTION_OCCUPANCY", "3", 1);
    }
    if (tc && !cuda::attentionTensorCoreShape(dtype, d)) {
      unsetenv("COLOSSAL_ATTENTION_BWD_ROWS");
      unsetenv("COLOSSAL_ATTENTION_OCCUPANCY");
      unsetenv("COLOSSAL_ATTENTION_BLOCK");
      continue;
    }
    double f1 = timeSteps(bench, fusedF, 10);
    double b1 = timeSteps(bench, fusedB, 10);
    std::printf("  fused %-9s forward %8.3f ms (%6.1f TFLOP/s)  backward "
                "%8.3f ms (%6.1f TFLOP/s)\n",
                kernel, f1, flops / f1 / 1e9, b1, 2.5 * flops / b1 / 1e9);
    unsetenv("COLOSSAL_ATTENTION_BWD_ROWS");
    unsetenv("COLOSSAL_ATTENTION_OCCUPANCY");
    unsetenv("COLOSSAL_ATTENTION_BLOCK");
  }
  useKernel("auto");
  double f2 = timeSteps(bench, plainF, 10), b2 = timeSteps(bench, plainB, 10);
  uint64_t scoreBytes =
      static_cast<uint64_t>(b * h * s * s) * dtypeSizeBytes(dtype);
  std::printf("  unfused      forward %8.3f ms                   backward "
              "%8.3f ms   (each [S, T] tensor %.0f MiB)\n",
              f2, b2, scoreBytes / 1048576.0);
  gpu->releaseArenas();
}

} // namespace

int main(int argc, char **argv) {
  Status st = createBackend(Device::kCuda, gpu);
  if (!st.isOk()) {
    std::printf("attention_check: no CUDA backend: %s\n", st.message().c_str());
    return 1;
  }
  const DType f32 = DType::kF32, bf16 = DType::kBF16, f16 = DType::kF16;
  const Case list[] = {
      {"plain", f32, 2, 4, 4, 64, 64, 64, false, {}},
      {"causal", f32, 2, 4, 4, 100, 100, 64, true, {}},
      {"causal D32", f32, 1, 2, 2, 70, 70, 32, true, {}},
      {"causal D128", f32, 1, 2, 2, 130, 130, 128, true, {}},
      {"gqa 8/2", f32, 2, 8, 2, 48, 48, 64, true, {}},
      {"mqa 4/1", f32, 1, 4, 1, 33, 33, 64, false, {}},
      {"S < T causal", f32, 1, 2, 2, 17, 90, 64, true, {}},
      {"S > T", f32, 1, 2, 2, 90, 17, 32, false, {}},
      {"S > T causal", f32, 1, 2, 1, 40, 20, 64, true, {}},
      {"bias [B,1,S,T]", f32, 2, 4, 4, 50, 50, 64, false, {2, 1, 50, 50}},
      {"bias [B,1,1,T]", f32, 2, 4, 2, 50, 70, 64, true, {2, 1, 1, 70}},
      {"bias [S,T] D128", f32, 1, 2, 2, 64, 64, 128, false, {64, 64}},
      {"odd D 80", f32, 1, 2, 2, 40, 40, 80, true, {}},
      {"bf16 plain", bf16, 2, 4, 4, 64, 64, 64, false, {}},
      {"bf16 causal D128", bf16, 1, 4, 4, 200, 200, 128, true, {}},
      {"bf16 gqa causal", bf16, 2, 8, 2, 96, 96, 64, true, {}},
      {"bf16 bias S<T", bf16, 2, 4, 4, 40, 72, 32, true, {2, 1, 1, 72}},
      // The tensor-core kernel's edges: tiles of 64 rows and 64 keys (32
      // for D 128's backward), partial tiles, the causal diagonal inside a
      // tile, rows that see no key (S > T causal), every bias broadcast.
      {"bf16 causal D64 S200", bf16, 2, 4, 4, 200, 200, 64, true, {}},
      {"bf16 D64 S<T causal", bf16, 1, 4, 4, 70, 193, 64, true, {}},
      {"bf16 D128 S>T causal", bf16, 1, 2, 1, 150, 77, 128, true, {}},
      {"bf16 D64 S>T", bf16, 1, 2, 2, 129, 31, 64, false, {}},
      {"bf16 gqa 8/2 D128", bf16, 2, 8, 2, 130, 130, 128, true, {}},
      {"bf16 mqa 4/1 D64", bf16, 1, 4, 1, 64, 64, 64, false, {}},
      {"bf16 bias [B,H,S,T] D64", bf16, 2, 2, 2, 65, 66, 64, false,
       {2, 2, 65, 66}},
      {"bf16 bias [S,T] D128", bf16, 1, 2, 2, 96, 96, 128, true, {96, 96}},
      {"bf16 bias [B,1,1,T] D64", bf16, 2, 4, 2, 100, 100, 64, true,
       {2, 1, 1, 100}},
      {"bf16 single row D64", bf16, 1, 1, 1, 1, 1, 64, true, {}},
      // No query rows: dq empty, dk and dv zeros (the fused backward's
      // chunks would be sized by 0 bytes a pair; the two-pass kernels
      // write the zeros).
      {"bf16 no rows D64", bf16, 1, 2, 2, 0, 16, 64, false, {}},
      {"bf16 long causal D64", bf16, 1, 2, 2, 1024, 1024, 64, true, {}},
      {"f16 causal D64", f16, 2, 4, 4, 130, 130, 64, true, {}},
      {"f16 gqa bias D128", f16, 1, 4, 2, 80, 96, 128, false, {1, 1, 80, 96}},
      // Head dims 80 (OPT-2.7b, Phi) and 96 on tensor cores (opt-in until
      // session 4's run of this check).
      {"bf16 causal D80 S200", bf16, 2, 4, 4, 200, 200, 80, true, {}},
      {"bf16 D80 S<T causal", bf16, 1, 4, 4, 70, 193, 80, true, {}},
      {"bf16 gqa 8/2 D96", bf16, 2, 8, 2, 130, 130, 96, true, {}},
      {"bf16 bias [B,1,1,T] D80", bf16, 2, 4, 2, 100, 100, 80, true,
       {2, 1, 1, 100}},
      {"f16 D96 S>T", f16, 1, 2, 2, 129, 31, 96, false, {}},
  };
  std::string mode = argc > 1 ? argv[1] : "";
  std::mt19937 gen(1234);
  if (mode != "--timing-only") {
    for (const Case &c : list)
      runCase(c, gen);
    std::printf("attention_check: %d cases, %d failed\n", cases, failures);
  }
  bool timing = mode != "--no-timing";
  if (timing) {
    timeOptShape(8, 32, 1024, 64, bf16);
    timeOptShape(8, 32, 1024, 128, bf16);
    timeOptShape(8, 32, 1024, 80, bf16); // OPT-2.7b's heads
    timeOptShape(8, 32, 1024, 64, f32);
  }
  return failures ? 1 : 0;
}
