//===- Calibrate.cu - Measure the GPU fields of a device profile ----------===//
//
// The GPU half of `colossal-run --calibrate` (../Calibrate.h). GEMMs run
// through the CUDA backend itself (a one-matmul plan, prepared as the
// executor prepares a plan, so the cuBLASLt descriptors and algorithm are
// the ones a real plan gets) and are timed by the backend's own trace
// events. Copies are plain cudaMemcpyAsync on streams of our own, timed
// with CUDA events: HBM by a 1 GiB device-to-device copy (bytes read +
// written), the host link by 1 GiB pinned copies each way and both ways at
// once on two streams, the per-copy cost by 1000 back-to-back 4 KiB copies.
// Every figure is the median of several timed runs after a warm-up. All
// device and pinned memory is released on every path out.
//
//===----------------------------------------------------------------------===//

#include "../Backend.h"
#include "../Calibrate.h"

#include "colossal/runtime/OpTable.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace colossal::runtime {

namespace {

Status cudaFailure(cudaError_t err, const char *call, const char *file,
                   int line) {
  return Status(StatusCode::kInternal,
                std::string("calibrate: CUDA call ") + call + " failed: " +
                    cudaGetErrorName(err) + ": " + cudaGetErrorString(err),
                file, line);
}

#define CALIBRATE_CUDA(expr)                                                   \
  do {                                                                         \
    cudaError_t calibrateErr_ = (expr);                                        \
    if (calibrateErr_ != cudaSuccess)                                          \
      return cudaFailure(calibrateErr_, #expr, __FILE__, __LINE__);            \
  } while (0)

constexpr size_t kGiB = size_t{1} << 30;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string fmt(const char *f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

void progress(const CalibrateOptions &opts, const std::string &line) {
  if (opts.progress) {
    std::fprintf(opts.progress, "colossal-run: calibrate: %s\n", line.c_str());
    std::fflush(opts.progress);
  }
}

/// The device and pinned memory, streams and events of the copy tests,
/// freed on every path out.
struct CopyResources {
  void *dev[2] = {nullptr, nullptr};
  void *host[2] = {nullptr, nullptr};
  cudaStream_t streams[2] = {nullptr, nullptr};
  cudaEvent_t events[4] = {nullptr, nullptr, nullptr, nullptr};
  ~CopyResources() {
    for (cudaStream_t s : streams)
      if (s)
        cudaStreamSynchronize(s);
    for (void *p : dev)
      if (p)
        cudaFree(p);
    for (void *p : host)
      if (p)
        cudaFreeHost(p);
    for (cudaEvent_t e : events)
      if (e)
        cudaEventDestroy(e);
    for (cudaStream_t s : streams)
      if (s)
        cudaStreamDestroy(s);
  }
};

//===----------------------------------------------------------------------===//
// GEMMs through the backend
//===----------------------------------------------------------------------===//

struct GemmShape {
  int64_t batch, m, n, k;
};

/// A plan of one matmul [batch, m, k] x [batch, k, n] in one device arena.
Plan matmulPlan(DType dtype, const GemmShape &s) {
  Plan plan;
  plan.numStreams = 1;
  std::vector<int64_t> lead;
  if (s.batch > 1)
    lead.push_back(s.batch);
  auto dims = [&](int64_t r, int64_t c) {
    std::vector<int64_t> d = lead;
    d.push_back(r);
    d.push_back(c);
    return d;
  };
  TensorType types[3] = {{dtype, dims(s.m, s.k)},
                         {dtype, dims(s.k, s.n)},
                         {dtype, dims(s.m, s.n)}};
  uint64_t offset = 0;
  for (uint32_t t = 0; t < 3; ++t) {
    uint64_t bytes = types[t].sizeBytes();
    plan.buffers.push_back(
        {"calibrate" + std::to_string(t), 0, offset, bytes, 256, 0, 0});
    plan.tensors.push_back({"calibrate" + std::to_string(t), t, 0, types[t]});
    offset += (bytes + 255) / 256 * 256;
  }
  plan.arenas.push_back({MemorySpace::kDevice, offset, 256});
  PlanInstr instr;
  instr.attrs = Attrs(OpKind::MatMul);
  instr.attrs.setI("transpose_a", 0);
  instr.attrs.setI("transpose_b", 0);
  instr.inputs = {0, 1};
  instr.outputs = {2};
  instr.location = "calibrate";
  plan.instrs.push_back(instr);
  return plan;
}

/// Prepares `plan` on `backend` (arenas filled with a small finite value in
/// every float type: bytes 0x3c) and returns the operands of instruction 0.
Status preparePlanOn(Backend &backend, const Plan &plan,
                     std::vector<TensorRef> &ins,
                     std::vector<TensorRef> &outs) {
  COLOSSAL_RETURN_IF_ERROR(backend.allocateArenas(plan.arenas));
  COLOSSAL_RETURN_IF_ERROR(
      backend.fill(backend.arenaBase(0), 0x3c, plan.arenas[0].sizeBytes));
  COLOSSAL_RETURN_IF_ERROR(backend.preparePlan(plan));
  auto ref = [&](uint32_t t) {
    const PlanTensor &tensor = plan.tensors[t];
    return TensorRef{tensor.type, backend.arenaBase(0) +
                                      plan.buffers[tensor.buffer].offsetBytes};
  };
  ins.clear();
  outs.clear();
  for (uint32_t t : plan.instrs[0].inputs)
    ins.push_back(ref(t));
  for (uint32_t t : plan.instrs[0].outputs)
    outs.push_back(ref(t));
  return Status::ok();
}

/// TFLOP/s of one shape: the backend's trace events around the prepared
/// GEMM, median of 10 runs after 3 warm-ups.
Status timeGemm(Backend &backend, DType dtype, const GemmShape &s,
                double &tflops) {
  Plan plan = matmulPlan(dtype, s);
  std::vector<TensorRef> ins, outs;
  COLOSSAL_RETURN_IF_ERROR(preparePlanOn(backend, plan, ins, outs));
  std::vector<double> seconds;
  for (int run = 0; run < 13; ++run) {
    if (!backend.traceBegin())
      return Status(StatusCode::kInternal,
                    "calibrate: the CUDA backend does not time instructions");
    uint64_t failed = 0;
    COLOSSAL_RETURN_IF_ERROR(backend.run(0, plan.instrs[0], ins, outs));
    COLOSSAL_RETURN_IF_ERROR(backend.synchronize(&failed));
    std::vector<TraceSlice> slices;
    COLOSSAL_RETURN_IF_ERROR(backend.traceEnd(slices));
    if (slices.size() != 1 || !(slices[0].durationUs > 0))
      return Status(StatusCode::kInternal,
                    "calibrate: the matmul was not timed");
    if (run >= 3)
      seconds.push_back(slices[0].durationUs * 1e-6);
  }
  backend.releaseArenas();
  double flops = 2.0 * s.batch * s.m * s.n * s.k;
  tflops = flops / median(seconds) / 1e12;
  return Status::ok();
}

struct GemmClassSpec {
  const char *label;
  uint64_t minDim;
  std::vector<GemmShape> shapes;
};

/// The classes of devices/h200.json (CostModel: min(M, N, K) >= min_dim),
/// each timed at the shapes an OPT-style model at 8 x 1024 tokens gives:
/// layer GEMMs at 2048/4096 wide (1.3b, 6.7b) with their 4x FFNs, at
/// 768/1024 wide (125m, 350m), and attention's batched [S, D] x [D, S] and
/// [S, S] x [S, D] with head dim 64 (8 x 12 and 8 x 32 heads).
std::vector<GemmClassSpec> halfClasses() {
  return {{"large",
           1536,
           {{1, 8192, 2048, 2048},
            {1, 8192, 8192, 2048},
            {1, 8192, 4096, 4096},
            {1, 8192, 16384, 4096}}},
          {"medium",
           512,
           {{1, 8192, 768, 768},
            {1, 8192, 3072, 768},
            {1, 8192, 768, 3072},
            {1, 8192, 1024, 1024}}},
          {"small",
           0,
           {{96, 1024, 1024, 64},
            {96, 1024, 64, 1024},
            {256, 1024, 1024, 64},
            {256, 1024, 64, 1024}}}};
}

std::string shapeList(const std::vector<GemmShape> &shapes) {
  std::string out;
  for (const GemmShape &s : shapes) {
    if (!out.empty())
      out += ", ";
    if (s.batch > 1)
      out += std::to_string(s.batch) + "x";
    out += std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
           std::to_string(s.k);
  }
  return out;
}

Status measureGemms(const CalibrateOptions &opts, Backend &backend,
                    GpuCalibration &out) {
  backend.enableTracing(true);
  struct DtypeSpec {
    const char *name;
    DType dtype;
    std::vector<GemmClassSpec> classes;
  };
  // f32 has one class ("any"): the median over a mix of layer and thin
  // shapes, since the cost model gives every f32 matmul one rate.
  std::vector<DtypeSpec> specs = {
      {"bf16", DType::kBF16, halfClasses()},
      {"f16", DType::kF16, halfClasses()},
      {"f32",
       DType::kF32,
       {{"any",
         0,
         {{1, 8192, 2048, 2048},
          {1, 8192, 4096, 4096},
          {1, 8192, 3072, 768},
          {1, 8192, 768, 3072},
          {96, 1024, 1024, 64}}}}}};
  for (const DtypeSpec &spec : specs)
    for (const GemmClassSpec &cls : spec.classes) {
      std::vector<double> rates;
      std::string each;
      for (const GemmShape &s : cls.shapes) {
        double tflops = 0;
        COLOSSAL_RETURN_IF_ERROR(timeGemm(backend, spec.dtype, s, tflops));
        rates.push_back(tflops);
        each += (each.empty() ? "" : ", ") + fmt("%.0f", tflops);
      }
      GemmClassRate r;
      r.dtype = spec.name;
      r.label = cls.label;
      r.minDim = cls.minDim;
      r.tflops = median(rates);
      r.shapes = shapeList(cls.shapes);
      progress(opts, std::string("GEMM ") + spec.name + " " + cls.label +
                         ": " + fmt("%.1f", r.tflops) + " TFLOP/s (" + each +
                         ")");
      out.notes.push_back(std::string(spec.name) + " GEMM " + cls.label +
                          " (min_dim " + std::to_string(cls.minDim) +
                          "): median " + fmt("%.1f", r.tflops) +
                          " TFLOP/s over [batch x] MxNxK " + r.shapes +
                          " (" + each + ")");
      out.gemm.push_back(std::move(r));
    }
  backend.enableTracing(false);
  return Status::ok();
}

/// The enqueue cost of the smallest kernel: 2000 one-element adds through
/// the prepared backend, back to back, wall clock to the last one's end.
Status measureKernelFloor(const CalibrateOptions &opts, Backend &backend,
                          GpuCalibration &out) {
  Plan plan;
  plan.numStreams = 1;
  TensorType one{DType::kF32, {1}};
  for (uint32_t t = 0; t < 3; ++t) {
    plan.buffers.push_back({"floor" + std::to_string(t), 0, 256ull * t, 4,
                            256, 0, 0});
    plan.tensors.push_back({"floor" + std::to_string(t), t, 0, one});
  }
  plan.arenas.push_back({MemorySpace::kDevice, 768, 256});
  PlanInstr instr;
  instr.attrs = Attrs(OpKind::Add);
  instr.inputs = {0, 1};
  instr.outputs = {2};
  plan.instrs.push_back(instr);
  std::vector<TensorRef> ins, outs;
  COLOSSAL_RETURN_IF_ERROR(preparePlanOn(backend, plan, ins, outs));
  std::vector<double> perKernel;
  constexpr int kKernels = 2000;
  for (int rep = 0; rep < 4; ++rep) {
    uint64_t failed = 0;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kKernels; ++i)
      COLOSSAL_RETURN_IF_ERROR(backend.run(0, plan.instrs[0], ins, outs));
    COLOSSAL_RETURN_IF_ERROR(backend.synchronize(&failed));
    std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    if (rep > 0)
      perKernel.push_back(took.count() / kKernels);
  }
  backend.releaseArenas();
  out.kernelFloorS = median(perKernel);
  progress(opts, "kernel floor: " + fmt("%.2f", out.kernelFloorS * 1e6) +
                     " us per one-element kernel");
  out.notes.push_back("kernel_floor_s: " + fmt("%.2f", out.kernelFloorS * 1e6) +
                      " us per one-element add, " + std::to_string(kKernels) +
                      " back to back through the backend (no CUDA graphs)");
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// Copies
//===----------------------------------------------------------------------===//

/// Seconds of one copy enqueued by `enqueue` on stream 0, by events: the
/// median of `runs` after one warm-up.
template <typename Enqueue>
Status timeCopies(CopyResources &r, int runs, Enqueue enqueue,
                  double &seconds) {
  std::vector<double> samples;
  for (int run = 0; run <= runs; ++run) {
    CALIBRATE_CUDA(cudaEventRecord(r.events[0], r.streams[0]));
    COLOSSAL_RETURN_IF_ERROR(enqueue());
    CALIBRATE_CUDA(cudaEventRecord(r.events[1], r.streams[0]));
    CALIBRATE_CUDA(cudaEventSynchronize(r.events[1]));
    float ms = 0;
    CALIBRATE_CUDA(cudaEventElapsedTime(&ms, r.events[0], r.events[1]));
    if (run > 0)
      samples.push_back(ms * 1e-3);
  }
  seconds = median(samples);
  if (!(seconds > 0))
    return Status(StatusCode::kInternal, "calibrate: a copy took no time");
  return Status::ok();
}

Status measureCopies(const CalibrateOptions &opts, GpuCalibration &out) {
  CopyResources r;
  for (cudaStream_t &s : r.streams)
    CALIBRATE_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (cudaEvent_t &e : r.events)
    CALIBRATE_CUDA(cudaEventCreate(&e));
  progress(opts, "allocating 2 GiB on the device and pinning 2 GiB of host "
                 "memory");
  for (void *&p : r.dev) {
    CALIBRATE_CUDA(cudaMalloc(&p, kGiB));
    CALIBRATE_CUDA(cudaMemsetAsync(p, 0x3c, kGiB, r.streams[0]));
  }
  for (void *&p : r.host) {
    CALIBRATE_CUDA(cudaHostAlloc(&p, kGiB, cudaHostAllocDefault));
    std::memset(p, 0x3c, kGiB);
  }
  CALIBRATE_CUDA(cudaStreamSynchronize(r.streams[0]));

  double s = 0;
  // HBM: a device-to-device copy reads and writes every byte.
  COLOSSAL_RETURN_IF_ERROR(timeCopies(
      r, 10,
      [&]() -> Status {
        CALIBRATE_CUDA(cudaMemcpyAsync(r.dev[1], r.dev[0], kGiB,
                                       cudaMemcpyDeviceToDevice,
                                       r.streams[0]));
        return Status::ok();
      },
      s));
  out.hbmBytesPerS = 2.0 * kGiB / s;
  progress(opts, "HBM: " + fmt("%.2f", out.hbmBytesPerS / 1e12) +
                     " TB/s (1 GiB device-to-device copy, read + written)");

  COLOSSAL_RETURN_IF_ERROR(timeCopies(
      r, 5,
      [&]() -> Status {
        CALIBRATE_CUDA(cudaMemcpyAsync(r.dev[0], r.host[0], kGiB,
                                       cudaMemcpyHostToDevice, r.streams[0]));
        return Status::ok();
      },
      s));
  out.h2dBytesPerS = kGiB / s;
  COLOSSAL_RETURN_IF_ERROR(timeCopies(
      r, 5,
      [&]() -> Status {
        CALIBRATE_CUDA(cudaMemcpyAsync(r.host[1], r.dev[1], kGiB,
                                       cudaMemcpyDeviceToHost, r.streams[0]));
        return Status::ok();
      },
      s));
  out.d2hBytesPerS = kGiB / s;
  // Both at once: stream 1 starts after stream 0's start event, and stream
  // 0's end waits for stream 1's copy.
  COLOSSAL_RETURN_IF_ERROR(timeCopies(
      r, 5,
      [&]() -> Status {
        CALIBRATE_CUDA(cudaEventRecord(r.events[2], r.streams[0]));
        CALIBRATE_CUDA(cudaStreamWaitEvent(r.streams[1], r.events[2], 0));
        CALIBRATE_CUDA(cudaMemcpyAsync(r.dev[0], r.host[0], kGiB,
                                       cudaMemcpyHostToDevice, r.streams[0]));
        CALIBRATE_CUDA(cudaMemcpyAsync(r.host[1], r.dev[1], kGiB,
                                       cudaMemcpyDeviceToHost, r.streams[1]));
        CALIBRATE_CUDA(cudaEventRecord(r.events[3], r.streams[1]));
        CALIBRATE_CUDA(cudaStreamWaitEvent(r.streams[0], r.events[3], 0));
        return Status::ok();
      },
      s));
  out.bidirectionalBytesPerS = 2.0 * kGiB / s;
  progress(opts, "pinned PCIe: host->device " +
                     fmt("%.1f", out.h2dBytesPerS / 1e9) +
                     " GB/s, device->host " +
                     fmt("%.1f", out.d2hBytesPerS / 1e9) +
                     " GB/s, both at once " +
                     fmt("%.1f", out.bidirectionalBytesPerS / 1e9) + " GB/s");

  // The per-copy cost: 1000 back-to-back 4 KiB copies on one stream, wall
  // clock from the first call to the last copy's end, so both the call's
  // host cost and the DMA's fixed cost count (whichever is larger).
  constexpr int kCopies = 1000;
  constexpr size_t kSmall = 4096;
  auto perCopy = [&](bool toDevice, double &seconds) -> Status {
    std::vector<double> samples;
    for (int rep = 0; rep < 4; ++rep) {
      auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kCopies; ++i) {
        size_t at = static_cast<size_t>(i) * kSmall;
        CALIBRATE_CUDA(
            toDevice ? cudaMemcpyAsync(static_cast<char *>(r.dev[0]) + at,
                                       static_cast<char *>(r.host[0]) + at,
                                       kSmall, cudaMemcpyHostToDevice,
                                       r.streams[0])
                     : cudaMemcpyAsync(static_cast<char *>(r.host[1]) + at,
                                       static_cast<char *>(r.dev[1]) + at,
                                       kSmall, cudaMemcpyDeviceToHost,
                                       r.streams[0]));
      }
      CALIBRATE_CUDA(cudaStreamSynchronize(r.streams[0]));
      std::chrono::duration<double> took =
          std::chrono::steady_clock::now() - start;
      if (rep > 0)
        samples.push_back(took.count() / kCopies);
    }
    seconds = median(samples);
    return Status::ok();
  };
  COLOSSAL_RETURN_IF_ERROR(perCopy(true, out.h2dCopyS));
  COLOSSAL_RETURN_IF_ERROR(perCopy(false, out.d2hCopyS));
  progress(opts, "per copy: " + fmt("%.1f", out.h2dCopyS * 1e6) +
                     " us host->device, " + fmt("%.1f", out.d2hCopyS * 1e6) +
                     " us device->host (4 KiB copies, back to back)");

  out.notes.push_back(
      "HBM: 1 GiB device-to-device cudaMemcpyAsync, bytes read + written: " +
      fmt("%.3g", out.hbmBytesPerS) + " B/s");
  out.notes.push_back(
      "Pinned host memory, 1 GiB copies: host->device " +
      fmt("%.3g", out.h2dBytesPerS) + ", device->host " +
      fmt("%.3g", out.d2hBytesPerS) + ", both at once on two streams " +
      fmt("%.3g", out.bidirectionalBytesPerS) + " B/s");
  out.notes.push_back("copy_latency_s: the mean of " +
                      fmt("%.1f", out.h2dCopyS * 1e6) + " us (host->device) "
                      "and " +
                      fmt("%.1f", out.d2hCopyS * 1e6) +
                      " us (device->host) per 4 KiB copy, 1000 back to back, "
                      "wall clock");
  return Status::ok();
}

Status calibrateGpu(const CalibrateOptions &opts, GpuCalibration &out) {
  std::unique_ptr<Backend> backend;
  Status st = createBackend(Device::kCuda, backend);
  if (!st.isOk())
    return Status(StatusCode::kUnsupported, st.message());
  cudaDeviceProp prop;
  CALIBRATE_CUDA(cudaGetDeviceProperties(&prop, 0));
  size_t freeBytes = 0, totalBytes = 0;
  CALIBRATE_CUDA(cudaMemGetInfo(&freeBytes, &totalBytes));
  out.gpuName = prop.name;
  out.deviceMemoryBytes = totalBytes;
  progress(opts, std::string("GPU ") + prop.name + ", " +
                     fmt("%.1f", totalBytes / double(kGiB)) + " GiB (" +
                     fmt("%.1f", freeBytes / double(kGiB)) + " GiB free)");
  out.notes.push_back(std::string("GPU: ") + prop.name + ", " +
                      std::to_string(prop.multiProcessorCount) +
                      " SMs; device_memory is cudaMemGetInfo's total");
  COLOSSAL_RETURN_IF_ERROR(measureGemms(opts, *backend, out));
  COLOSSAL_RETURN_IF_ERROR(measureKernelFloor(opts, *backend, out));
  backend.reset(); // its memory back before the copy tests take 2 GiB
  return measureCopies(opts, out);
}

struct Registrar {
  Registrar() { registerGpuCalibrator(&calibrateGpu); }
} registrar;

} // namespace

} // namespace colossal::runtime
