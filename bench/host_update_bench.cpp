//===- host_update_bench.cpp - The host AdamW's rate, as an offloaded step sees it
//
// An offloaded plan's steady state is bound by the host AdamW (BASELINES.md's
// bound for OPT-6.7b under 24 GiB is the CPU AdamW's time), and in a step it
// has measured slower than alone (session 6: ~2.7 G params/s in OPT-6.7b's
// step against 3.95 alone). This tool times the runtime's own host update,
// in the form plans run it (f32 param and moments, bf16 gradient divided by
// the scored-token count: 26 bytes a parameter), over three kinds of memory:
//   malloc  - ordinary pages (what AdamWSpeedTest times);
//   pinned  - cudaHostAlloc(mapped | portable): the host arenas' default;
//   huge    - mmap + madvise(MADV_HUGEPAGE) + cudaHostRegister
//             (COLOSSAL_HOST_PAGES=huge);
// on several thread counts, alone and while copies run both ways over PCIe
// (a pinned buffer to and from the device, as a step's fetches and gradient
// downloads do), and it prints the host memory traffic both imply. It also
// times a plain parallel copy (read 4, write 4 bytes an element) for the
// memory's own rate. Run on the GPU machine; prints one line per case:
//   host-update <memory> threads <t> [dma] : <G params/s> params/s ...
//
//   host-update-bench [--params N] [--repeats R] [--threads 16,15,12,8]
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/OpTable.h"

#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace colossal::runtime;

namespace {

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void check(cudaError_t err, const char *what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "host-update-bench: %s: %s\n", what,
                 cudaGetErrorString(err));
    std::exit(1);
  }
}

/// AnonHugePages of /proc/meminfo in KiB (-1 when unreadable).
long anonHugeKiB() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long value = -1;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "AnonHugePages:")
      return value;
  return -1;
}

std::string readFirstLine(const char *path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? std::string("(unreadable)") : line;
}

enum class Memory { kMalloc, kPinned, kHuge };
const char *memoryName(Memory m) {
  return m == Memory::kMalloc ? "malloc" : m == Memory::kPinned ? "pinned"
                                                                : "huge";
}

struct Block {
  Memory kind;
  void *ptr = nullptr;
  size_t bytes = 0;
};

Block allocate(Memory kind, size_t bytes) {
  Block b{kind, nullptr, bytes};
  switch (kind) {
  case Memory::kMalloc:
    b.ptr = std::malloc(bytes);
    if (!b.ptr) {
      std::fprintf(stderr, "host-update-bench: malloc of %zu bytes failed\n",
                   bytes);
      std::exit(1);
    }
    break;
  case Memory::kPinned:
    check(cudaHostAlloc(&b.ptr, bytes,
                        cudaHostAllocMapped | cudaHostAllocPortable),
          "cudaHostAlloc");
    break;
  case Memory::kHuge:
    b.ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b.ptr == MAP_FAILED) {
      std::fprintf(stderr, "host-update-bench: mmap failed\n");
      std::exit(1);
    }
    madvise(b.ptr, bytes, MADV_HUGEPAGE);
    std::memset(b.ptr, 0, bytes); // fault in before pinning
    check(cudaHostRegister(b.ptr, bytes,
                           cudaHostRegisterMapped | cudaHostRegisterPortable),
          "cudaHostRegister");
    break;
  }
  return b;
}

void release(Block &b) {
  switch (b.kind) {
  case Memory::kMalloc:
    std::free(b.ptr);
    break;
  case Memory::kPinned:
    cudaFreeHost(b.ptr);
    break;
  case Memory::kHuge:
    cudaHostUnregister(b.ptr);
    munmap(b.ptr, b.bytes);
    break;
  }
  b.ptr = nullptr;
}

/// Copies both ways over PCIe until stopped, counting the bytes.
struct Dma {
  void *hostUp = nullptr, *hostDown = nullptr, *devUp = nullptr,
       *devDown = nullptr;
  size_t chunk = size_t(64) << 20; // the plans' fetches are 16-256 MiB
  int chunks = 16;
  cudaStream_t up = nullptr, down = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes{0};
  std::thread thread;

  Dma() {
    size_t total = chunk * chunks;
    check(cudaHostAlloc(&hostUp, total, cudaHostAllocPortable), "dma alloc");
    check(cudaHostAlloc(&hostDown, total, cudaHostAllocPortable), "dma alloc");
    std::memset(hostUp, 1, total);
    std::memset(hostDown, 0, total);
    check(cudaMalloc(&devUp, total), "dma device alloc");
    check(cudaMalloc(&devDown, total), "dma device alloc");
    check(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking), "stream");
    check(cudaStreamCreateWithFlags(&down, cudaStreamNonBlocking), "stream");
  }
  ~Dma() {
    cudaFreeHost(hostUp);
    cudaFreeHost(hostDown);
    cudaFree(devUp);
    cudaFree(devDown);
    cudaStreamDestroy(up);
    cudaStreamDestroy(down);
  }
  void start() {
    stop = false;
    bytes = 0;
    thread = std::thread([this] {
      while (!stop.load()) {
        for (int c = 0; c < chunks; ++c) {
          size_t at = static_cast<size_t>(c) * chunk;
          cudaMemcpyAsync(static_cast<char *>(devUp) + at,
                          static_cast<char *>(hostUp) + at, chunk,
                          cudaMemcpyHostToDevice, up);
          cudaMemcpyAsync(static_cast<char *>(hostDown) + at,
                          static_cast<char *>(devDown) + at, chunk,
                          cudaMemcpyDeviceToHost, down);
        }
        cudaStreamSynchronize(up);
        cudaStreamSynchronize(down);
        bytes += 2 * chunk * chunks;
      }
    });
  }
  void finish() {
    stop = true;
    thread.join();
  }
};

Attrs adamwAttrs() {
  Attrs a(OpKind::AdamW);
  a.setF("beta1", 0.9);
  a.setF("beta2", 0.95);
  a.setF("eps", 1e-8);
  a.setF("weight_decay", 0.1);
  return a;
}

int64_t argValue(int argc, char **argv, const char *name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0)
      return std::max<int64_t>(1, std::atoll(argv[i + 1]));
  return fallback;
}

} // namespace

int main(int argc, char **argv) {
  int64_t n = argValue(argc, argv, "--params", int64_t(1) << 28);
  int64_t repeats = argValue(argc, argv, "--repeats", 3);
  std::vector<int> threads = {16, 15, 12, 8};
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--threads") == 0) {
      threads.clear();
      for (const char *p = argv[i + 1]; *p;) {
        threads.push_back(std::max(1, std::atoi(p)));
        while (*p && *p != ',')
          ++p;
        if (*p == ',')
          ++p;
      }
    }
  std::printf("host-update-bench: %lld params (26 bytes each a step), best of "
              "%lld, %u hardware threads\n",
              static_cast<long long>(n), static_cast<long long>(repeats),
              std::thread::hardware_concurrency());
  std::printf("transparent_hugepage/enabled: %s\n",
              readFirstLine("/sys/kernel/mm/transparent_hugepage/enabled")
                  .c_str());
  std::printf("transparent_hugepage/defrag: %s\n",
              readFirstLine("/sys/kernel/mm/transparent_hugepage/defrag")
                  .c_str());
  check(cudaSetDevice(0), "cudaSetDevice");
  Dma dma;

  size_t f32Bytes = static_cast<size_t>(n) * 4, bf16Bytes = f32Bytes / 2;
  for (Memory kind : {Memory::kMalloc, Memory::kPinned, Memory::kHuge}) {
    long hugeBefore = anonHugeKiB();
    double t0 = now();
    size_t total = 3 * f32Bytes + bf16Bytes + sizeof(float) * 2 + 64;
    Block block = allocate(kind, total);
    char *base = static_cast<char *>(block.ptr);
    float *p = reinterpret_cast<float *>(base);
    float *m = reinterpret_cast<float *>(base + f32Bytes);
    float *v = reinterpret_cast<float *>(base + 2 * f32Bytes);
    uint16_t *g = reinterpret_cast<uint16_t *>(base + 3 * f32Bytes);
    float *scalars =
        reinterpret_cast<float *>(base + 3 * f32Bytes + bf16Bytes + 32);
    // Values in training's ranges; every page touched.
    for (int64_t i = 0; i < n; ++i) {
      p[i] = 0.02f * std::sin(0.001f * static_cast<float>(i % 100003));
      m[i] = 1e-4f * static_cast<float>(i % 17) - 8e-4f;
      v[i] = 1e-7f * static_cast<float>(i % 5 + 1);
      float gi = 1e-2f * std::cos(0.003f * static_cast<float>(i % 7919));
      uint32_t bits;
      std::memcpy(&bits, &gi, 4);
      g[i] = static_cast<uint16_t>(bits >> 16);
    }
    scalars[0] = 1e-4f;  // lr
    scalars[1] = 8192.f; // the divisor (scored tokens)
    int64_t step = 9;
    long hugeAfter = anonHugeKiB();
    std::printf("%s: %.2f GiB allocated and filled in %.1f s; AnonHugePages "
                "%+ld MiB\n",
                memoryName(kind), static_cast<double>(total) / (1 << 30),
                now() - t0,
                hugeBefore >= 0 && hugeAfter >= 0
                    ? (hugeAfter - hugeBefore) / 1024
                    : -1);

    TensorType f32{DType::kF32, {n}}, bf16{DType::kBF16, {n}};
    TensorType scalarF32{DType::kF32, {}}, scalarI64{DType::kI64, {}};
    std::vector<TensorRef> ins = {{f32, p},           {bf16, g},
                                  {f32, m},           {f32, v},
                                  {scalarF32, scalars}, {scalarI64, &step},
                                  {scalarF32, scalars + 1}};
    std::vector<TensorRef> outs = {{f32, p}, {f32, m}, {f32, v}};
    Attrs attrs = adamwAttrs();

    for (bool withDma : {false, true})
      for (int t : threads) {
        setenv("COLOSSAL_CPU_THREADS", std::to_string(t).c_str(), 1);
        if (withDma)
          dma.start();
        double best = INFINITY;
        double dmaStart = now();
        uint64_t dmaBytes0 = dma.bytes.load();
        for (int64_t r = 0; r < repeats; ++r) {
          double start = now();
          Status status = runCpuKernel(attrs, ins, outs);
          if (!status.isOk()) {
            std::fprintf(stderr, "host-update-bench: %s\n",
                         status.toString().c_str());
            return 1;
          }
          best = std::min(best, now() - start);
        }
        double dmaRate = 0;
        if (withDma) {
          double span = now() - dmaStart;
          dma.finish();
          dmaRate = static_cast<double>(dma.bytes.load() - dmaBytes0) / span;
        }
        double rate = static_cast<double>(n) / best;
        std::printf("host-update %-6s threads %2d %s: %.3f G params/s, %.1f "
                    "GB/s host traffic%s",
                    memoryName(kind), t, withDma ? "dma " : "alone", rate * 1e-9,
                    rate * 26e-9, withDma ? "" : "\n");
        if (withDma)
          std::printf(" + dma %.1f GB/s both ways (approx.)\n",
                      dmaRate * 1e-9);
      }
    unsetenv("COLOSSAL_CPU_THREADS");

    // The memory's own rate: a parallel copy of m into v (4 + 4 bytes).
    for (int t : {16}) {
      std::vector<std::thread> pool;
      double best = INFINITY;
      for (int64_t r = 0; r < repeats; ++r) {
        double start = now();
        int64_t per = (n + t - 1) / t;
        for (int k = 0; k < t; ++k)
          pool.emplace_back([=] {
            int64_t b = k * per, e = std::min<int64_t>(n, b + per);
            if (b < e)
              std::memcpy(v + b, m + b, static_cast<size_t>(e - b) * 4);
          });
        for (std::thread &th : pool)
          th.join();
        pool.clear();
        best = std::min(best, now() - start);
      }
      std::printf("copy        %-6s threads %2d alone: %.1f GB/s (read + "
                  "written)\n",
                  memoryName(kind), t, 8.0 * static_cast<double>(n) / best * 1e-9);
    }
    release(block);
  }
  return 0;
}
