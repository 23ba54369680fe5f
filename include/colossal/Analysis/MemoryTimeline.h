//===- MemoryTimeline.h - Bytes in use per instruction, by class -*- C++
//-*-===//
//
// What the planner's report draws and the budget check explains: for every
// instruction of a plan, how many bytes of each memory space are live, split
// by what they hold (weights, gradients, optimizer state, ...). Kept apart
// from the IR like the offset packer: plain buffer records in, numbers out,
// unit-tested in unittests/MemoryTimelineTest.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_MEMORYTIMELINE_H
#define COLOSSAL_ANALYSIS_MEMORYTIMELINE_H

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace mlir::colossal {

/// Where a buffer lives; the values equal cplan's MemorySpace.
enum class Space : uint8_t { Device = 0, Host = 1 };
inline constexpr size_t kNumSpaces = 2;

/// What a buffer holds. The order is the drawing order of the report's
/// picture, bottom to top: what lives all along first, activations last.
enum class TensorClass : uint8_t {
  Weights,          ///< bound as a weight
  OptimizerState,   ///< states adam.* and sgd.* (and any other non-grad state)
  Gradients,        ///< states grad.*: the accumulated weight gradients
  Constants,        ///< bound as a constant
  InputsOutputs,    ///< bound as a program's input or output
  SavedActivations, ///< activations kept from the forward for the backward
  Temporaries,      ///< every other activation
};
inline constexpr size_t kNumTensorClasses = 7;

/// "weights", "optimizer state", ...: for messages and legends.
const char *tensorClassName(TensorClass c);
/// "weights", "optimizer_state", ...: for JSON keys and CSS classes.
const char *tensorClassKey(TensorClass c);

/// The class of a persistent state, by its name: grad.* are gradients;
/// adam.*, sgd.* and any other state are optimizer state.
TensorClass classifyState(std::string_view name);

/// The class of an activation live over [firstUse, lastUse]: it is saved for
/// the backward when it is defined before the backward's first instruction
/// `backwardStart` and still used at or after it; else it is a temporary
/// (also when there is no backward: a forward-only plan).
TensorClass classifyActivation(uint32_t firstUse, uint32_t lastUse,
                               std::optional<uint32_t> backwardStart);

/// One buffer: `sizeBytes` in `space`, live during instructions
/// [firstUse, lastUse] (inclusive, as cplan.buffer.alloc's live range).
struct TimelineBuffer {
  uint64_t sizeBytes = 0;
  Space space = Space::Device;
  uint32_t firstUse = 0;
  uint32_t lastUse = 0;
  TensorClass tensorClass = TensorClass::Temporaries;
};

/// One memory space over the schedule.
struct SpaceTimeline {
  /// bytesByClass[c][i]: bytes of class c live at instruction i.
  std::array<std::vector<uint64_t>, kNumTensorClasses> bytesByClass;
  std::vector<uint64_t> totalBytes; ///< per instruction, all classes
  uint64_t peakBytes = 0;           ///< max of totalBytes (0 when empty)
  uint32_t peakInstruction = 0;     ///< the first instruction at the peak
  /// bytesByClass[c][peakInstruction], per class.
  std::array<uint64_t, kNumTensorClasses> peakByClass{};
};

struct MemoryTimeline {
  /// The length of every per-instruction vector: the plan's instruction
  /// count, stretched to cover every buffer's lastUse (a plan with no
  /// instructions has its buffers at instruction 0, so the length is 1).
  uint32_t numInstructions = 0;
  std::array<SpaceTimeline, kNumSpaces> spaces;
  const SpaceTimeline &operator[](Space s) const {
    return spaces[static_cast<size_t>(s)];
  }
};

/// Sums live bytes per instruction, class and space with one difference
/// array per class: O(buffers + classes x instructions). The device peak
/// equals colossal-assign-offsets' liveness lower bound (the packer's
/// arena can only be larger); alignment padding is not counted.
MemoryTimeline computeMemoryTimeline(const std::vector<TimelineBuffer> &buffers,
                                     uint32_t numInstructions);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_MEMORYTIMELINE_H
