//===- PlanReaderFuzzer.cpp - libFuzzer target for readPlan, CpuExecutor --===//
//
// Feeds untrusted bytes to colossal::runtime::readPlan twice: as they are
// (the magic, version, size and checksum checks), and resealed, with the
// header's file size and both checksums recomputed, so that mutations reach
// the section table and record decoding behind the checksum instead of
// failing it. A plan the reader accepts must then
//   - serialise again (writePlan validates it a second time) and read back
//     to the same bytes: reader and writer agree on the format;
//   - run every program on the CPU executor with zero-filled weights and
//     inputs of the planned types without crashing (RunPlan.h). A failing
//     Status is fine (a gather index out of range is a run-time error), an
//     internal error is not. Plans with large arenas are not run.
//
//===----------------------------------------------------------------------===//

#include "RunPlan.h"

#include "colossal/runtime/PlanFormat.h"

#include <cstdint>
#include <vector>

using namespace colossal;
using namespace colossal::runtime;

namespace {

// Header fields of format 1.x, as docs/plan-format.md gives them.
constexpr size_t kHeaderBytes = 64;
constexpr size_t kHdrFileBytes = 16;
constexpr size_t kHdrChecksum = 32;
constexpr size_t kHdrHeaderChecksum = 56;

uint64_t fnv1a64(const uint8_t *data, size_t size) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

void store64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}

/// Rewrites the file size and the two checksums so that they match.
void reseal(std::vector<uint8_t> &bytes) {
  store64(bytes.data() + kHdrFileBytes, bytes.size());
  store64(bytes.data() + kHdrChecksum,
          fnv1a64(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes));
  store64(bytes.data() + kHdrHeaderChecksum,
          fnv1a64(bytes.data(), kHdrHeaderChecksum));
}

void checkAccepted(const Plan &plan) {
  // Reader and writer agree: what was accepted serialises, and the
  // canonical bytes read back and serialise to themselves.
  std::vector<uint8_t> canonical, again;
  Status st = writePlan(plan, canonical);
  if (!st.isOk())
    fuzz::bug("plan-reader", "writePlan() of an accepted plan", st.toString());
  Plan reread;
  st = readPlan(canonical.data(), canonical.size(), reread);
  if (!st.isOk())
    fuzz::bug("plan-reader", "readPlan() of writePlan()'s output",
              st.toString());
  st = writePlan(reread, again);
  if (!st.isOk())
    fuzz::bug("plan-reader", "writePlan() of a re-read plan", st.toString());
  if (again != canonical)
    fuzz::bug("plan-reader", "write(read(write(plan))) != write(plan)", "");
  fuzz::runPlanOnZeros(plan, "plan-reader");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Plan plan;
  if (readPlan(data, size, plan).isOk()) {
    checkAccepted(plan);
    return 0; // already sealed: the second read would be the same
  }
  if (size < kHeaderBytes)
    return 0;
  std::vector<uint8_t> sealed(data, data + size);
  reseal(sealed);
  if (readPlan(sealed.data(), sealed.size(), plan).isOk())
    checkAccepted(plan);
  return 0;
}
