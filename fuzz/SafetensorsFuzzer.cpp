//===- SafetensorsFuzzer.cpp - libFuzzer target for readSafetensors -------===//
//
// Feeds untrusted bytes to colossal::runtime::readSafetensors (the JSON
// header parser, dtype/shape/offset checks and the data copy). A file the
// reader accepts must round-trip: writeSafetensors succeeds, and reading
// its output gives the same tensors (names, order, types, bytes) and the
// same metadata.
//
//===----------------------------------------------------------------------===//

#include "colossal/runtime/Safetensors.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace colossal::runtime;

namespace {

[[noreturn]] void bug(const char *what, const Status &st) {
  std::fprintf(stderr, "safetensors fuzzer: %s: %s\n", what,
               st.toString().c_str());
  std::abort();
}

bool sameFile(const SafetensorsFile &a, const SafetensorsFile &b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size())
    return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto &x = a.tensors[i], &y = b.tensors[i];
    if (x.first != y.first || x.second.type != y.second.type ||
        x.second.bytes != y.second.bytes)
      return false;
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  SafetensorsFile file;
  if (!readSafetensors(data, size, file).isOk())
    return 0;
  for (const auto &entry : file.tensors)
    if (entry.second.bytes.size() != entry.second.type.sizeBytes())
      bug("an accepted tensor's byte count differs from its type's", Status());
  std::vector<uint8_t> bytes;
  Status st = writeSafetensors(file, bytes);
  if (!st.isOk())
    bug("writeSafetensors() of an accepted file", st);
  SafetensorsFile reread;
  st = readSafetensors(bytes.data(), bytes.size(), reread);
  if (!st.isOk())
    bug("readSafetensors() of writeSafetensors()'s output", st);
  if (!sameFile(file, reread))
    bug("read(write(file)) differs from file", Status());
  return 0;
}
