//===- MemoryTimeline.cpp - Bytes in use per instruction, by class --------===//

#include "colossal/Analysis/MemoryTimeline.h"

#include <algorithm>

using namespace mlir::colossal;

const char *mlir::colossal::tensorClassName(TensorClass c) {
  switch (c) {
  case TensorClass::Weights:
    return "weights";
  case TensorClass::OptimizerState:
    return "optimizer state";
  case TensorClass::Gradients:
    return "gradients";
  case TensorClass::Constants:
    return "constants";
  case TensorClass::InputsOutputs:
    return "inputs/outputs";
  case TensorClass::SavedActivations:
    return "activations saved for backward";
  case TensorClass::Temporaries:
    return "temporaries";
  }
  return "?";
}

const char *mlir::colossal::tensorClassKey(TensorClass c) {
  switch (c) {
  case TensorClass::Weights:
    return "weights";
  case TensorClass::OptimizerState:
    return "optimizer_state";
  case TensorClass::Gradients:
    return "gradients";
  case TensorClass::Constants:
    return "constants";
  case TensorClass::InputsOutputs:
    return "inputs_outputs";
  case TensorClass::SavedActivations:
    return "saved_activations";
  case TensorClass::Temporaries:
    return "temporaries";
  }
  return "unknown";
}

TensorClass mlir::colossal::classifyState(std::string_view name) {
  if (name.substr(0, 5) == "grad.")
    return TensorClass::Gradients;
  return TensorClass::OptimizerState;
}

TensorClass
mlir::colossal::classifyActivation(uint32_t firstUse, uint32_t lastUse,
                                   std::optional<uint32_t> backwardStart) {
  if (backwardStart && firstUse < *backwardStart && lastUse >= *backwardStart)
    return TensorClass::SavedActivations;
  return TensorClass::Temporaries;
}

MemoryTimeline mlir::colossal::computeMemoryTimeline(
    const std::vector<TimelineBuffer> &buffers, uint32_t numInstructions) {
  MemoryTimeline t;
  uint32_t n = numInstructions;
  for (const TimelineBuffer &b : buffers)
    n = std::max(n, b.lastUse + 1);
  t.numInstructions = n;

  // Difference arrays: +size at firstUse, -size after lastUse; one extra
  // slot so that lastUse + 1 == n needs no check. Signed, since a prefix of
  // the deltas may dip while sizes cancel.
  for (size_t s = 0; s < kNumSpaces; ++s) {
    SpaceTimeline &st = t.spaces[s];
    std::array<std::vector<int64_t>, kNumTensorClasses> delta;
    for (auto &d : delta)
      d.assign(static_cast<size_t>(n) + 1, 0);
    for (const TimelineBuffer &b : buffers) {
      if (static_cast<size_t>(b.space) != s || b.sizeBytes == 0)
        continue;
      uint32_t first = std::min(b.firstUse, b.lastUse);
      auto &d = delta[static_cast<size_t>(b.tensorClass)];
      d[first] += static_cast<int64_t>(b.sizeBytes);
      d[b.lastUse + 1] -= static_cast<int64_t>(b.sizeBytes);
    }
    st.totalBytes.assign(n, 0);
    for (size_t c = 0; c < kNumTensorClasses; ++c) {
      st.bytesByClass[c].assign(n, 0);
      int64_t live = 0;
      for (uint32_t i = 0; i < n; ++i) {
        live += delta[c][i];
        st.bytesByClass[c][i] = static_cast<uint64_t>(live);
        st.totalBytes[i] += static_cast<uint64_t>(live);
      }
    }
    for (uint32_t i = 0; i < n; ++i)
      if (st.totalBytes[i] > st.peakBytes) { // strict: the first peak wins
        st.peakBytes = st.totalBytes[i];
        st.peakInstruction = i;
      }
    if (n > 0)
      for (size_t c = 0; c < kNumTensorClasses; ++c)
        st.peakByClass[c] = st.bytesByClass[c][st.peakInstruction];
  }
  return t;
}
