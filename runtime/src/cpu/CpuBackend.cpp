//===- CpuBackend.cpp - Arenas in host memory, the reference kernels ------===//
//
// The CPU backend runs every instruction synchronously with runCpuKernel();
// its "device" memory is host memory, so upload and download are memcpy.
//
//===----------------------------------------------------------------------===//

#include "../Backend.h"

#include "colossal/runtime/Kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace colossal::runtime {

namespace {

class CpuBackend final : public Backend {
public:
  Device device() const override { return Device::kCpu; }

  Status allocateArenas(const std::vector<PlanArena> &arenas) override {
    releaseArenas();
    for (size_t a = 0; a < arenas.size(); ++a) {
      const PlanArena &arena = arenas[a];
      // calloc, over-allocated by the alignment and aligned by hand: large
      // arenas come zeroed from the OS without touching every page, and an
      // arena of 0 bytes still gets a valid base.
      uint64_t align = std::max<uint64_t>(arena.alignBytes, 16);
      uint64_t padded = arena.sizeBytes + align;
      if (arena.sizeBytes > UINT64_MAX - align || padded > SIZE_MAX) {
        releaseArenas();
        return Status(StatusCode::kUnsupported,
                      "arena " + std::to_string(a) + " of " +
                          std::to_string(arena.sizeBytes) +
                          " bytes is too large for this machine");
      }
      void *raw = std::calloc(static_cast<size_t>(padded), 1);
      if (!raw) {
        releaseArenas();
        return Status(StatusCode::kUnsupported,
                      "cannot allocate arena " + std::to_string(a) + " (" +
                          memorySpaceName(arena.space) + ", " +
                          std::to_string(arena.sizeBytes) + " bytes)");
      }
      // Zeroed, so that a plan reading a buffer before writing it (a
      // compiler bug) gives the same numbers on every run.
      uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
      uintptr_t aligned =
          (addr + (align - 1)) & ~static_cast<uintptr_t>(align - 1);
      arenas_.emplace_back(static_cast<uint8_t *>(raw), &std::free);
      bases_.push_back(reinterpret_cast<uint8_t *>(aligned));
    }
    return Status::ok();
  }

  void releaseArenas() override {
    arenas_.clear();
    bases_.clear();
  }

  uint8_t *arenaBase(size_t index) const override { return bases_[index]; }

  Status upload(void *dst, const void *src, size_t bytes) override {
    if (bytes != 0)
      std::memcpy(dst, src, bytes);
    return Status::ok();
  }

  Status download(void *dst, const void *src, size_t bytes) override {
    if (bytes != 0)
      std::memcpy(dst, src, bytes);
    return Status::ok();
  }

  Status fill(void *dst, uint8_t value, size_t bytes) override {
    if (bytes != 0)
      std::memset(dst, value, bytes);
    return Status::ok();
  }

  Status run(uint64_t index, const PlanInstr &instr,
             const std::vector<TensorRef> &inputs,
             const std::vector<TensorRef> &outputs) override {
    (void)index;
    return runCpuKernel(instr.attrs, inputs, outputs);
  }

  Status synchronize(uint64_t *failedInstr) override {
    if (failedInstr)
      *failedInstr = UINT64_MAX;
    return Status::ok();
  }

private:
  std::vector<std::unique_ptr<uint8_t[], void (*)(void *)>> arenas_;
  std::vector<uint8_t *> bases_;
};

} // namespace

std::unique_ptr<Backend> createCpuBackend() {
  return std::make_unique<CpuBackend>();
}

} // namespace colossal::runtime
