//===- PlanEmitter.cpp - cplan functions -> the runtime's Plan ------------===//

#include "colossal/Target/PlanEmitter.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Dialect/Plan/PlanDialect.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

static std::string locationName(Location loc) {
  if (auto nl = dyn_cast<NameLoc>(loc))
    return nl.getName().str();
  if (auto fused = dyn_cast<FusedLoc>(loc))
    for (Location inner : fused.getLocations())
      if (auto nl = dyn_cast<NameLoc>(inner))
        return nl.getName().str();
  return "";
}

/// The dense bytes of a constant, splats expanded, bools one byte each.
static std::vector<uint8_t> constantBytes(ElementsAttr value,
                                          const rt::TensorType &type) {
  std::vector<uint8_t> out(type.sizeBytes());
  auto dense = cast<DenseElementsAttr>(value);
  const int64_t n = type.numElements();
  if (n == 0)
    return out;
  if (type.dtype == rt::DType::kBool) {
    int64_t i = 0;
    for (bool v : dense.getValues<bool>())
      out[i++] = v ? 1 : 0;
    return out;
  }
  ArrayRef<char> raw = dense.getRawData();
  size_t elem = rt::dtypeSizeBytes(type.dtype);
  if (dense.isSplat()) {
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(out.data() + i * elem, raw.data(), elem);
  } else {
    std::memcpy(out.data(), raw.data(), out.size());
  }
  return out;
}

FailureOr<rt::Plan> mlir::colossal::buildPlan(func::FuncOp func) {
  rt::Plan plan;
  auto intAttr = [&](StringRef name, int64_t dflt) {
    if (auto a = func->getAttrOfType<IntegerAttr>(name))
      return a.getInt();
    return dflt;
  };
  plan.numStreams = static_cast<uint32_t>(intAttr("cplan.num_streams", 1));
  plan.numEvents = static_cast<uint32_t>(intAttr("cplan.num_events", 0));
  // Format 1.2: `cplan.stream_kinds = ["compute", "copy", ...]`, one per
  // stream; absent: every stream computes.
  if (Attribute kindsAttr = func->getAttr("cplan.stream_kinds")) {
    auto kinds = dyn_cast<ArrayAttr>(kindsAttr);
    if (!kinds)
      return func.emitOpError()
             << "requires cplan.stream_kinds to be an array of strings, got "
             << kindsAttr;
    for (auto [s, a] : llvm::enumerate(kinds)) {
      auto name = dyn_cast<StringAttr>(a);
      if (!name || (name.getValue() != "compute" && name.getValue() != "copy" &&
                    name.getValue() != "host"))
        return func.emitOpError()
               << "cplan.stream_kinds[" << s
               << "]: expected \"compute\", \"copy\" or \"host\", got " << a;
      plan.streamKinds.push_back(name.getValue() == "compute"
                                     ? rt::StreamKind::kCompute
                                 : name.getValue() == "copy"
                                     ? rt::StreamKind::kCopy
                                     : rt::StreamKind::kHost);
    }
    if (plan.streamKinds.size() != plan.numStreams)
      return func.emitOpError()
             << "declares " << plan.numStreams << " streams (cplan.num_streams) "
             << "but " << plan.streamKinds.size()
             << " kinds (cplan.stream_kinds)";
  }
  if (Attribute carriedAttr = func->getAttr("cplan.carried_streams")) {
    auto carried = dyn_cast<ArrayAttr>(carriedAttr);
    if (!carried)
      return func.emitOpError()
             << "requires cplan.carried_streams to be an array of stream "
                "indices, got "
             << carriedAttr;
    for (Attribute a : carried) {
      auto index = dyn_cast<IntegerAttr>(a);
      if (!index || index.getInt() < 0 ||
          index.getInt() >= static_cast<int64_t>(plan.numStreams))
        return func.emitOpError()
               << "cplan.carried_streams: " << a << " is not a stream of the "
               << plan.numStreams << " declared";
      plan.carriedStreams |= uint64_t{1} << index.getInt();
    }
  }
  auto arenaBytes = func->getAttrOfType<DenseI64ArrayAttr>("cplan.arena_bytes");
  if (!arenaBytes || arenaBytes.size() != 2)
    return func.emitOpError()
           << "has no cplan.arena_bytes: run colossal-assign-offsets first";
  // Arena 0 is the device arena, arena 1 the host arena (always both, so
  // that buffer arena indices equal memory spaces).
  plan.arenas.push_back({rt::MemorySpace::kDevice,
                         static_cast<uint64_t>(arenaBytes[0]), 64});
  plan.arenas.push_back({rt::MemorySpace::kHost,
                         static_cast<uint64_t>(arenaBytes[1]), 64});

  llvm::DenseMap<Value, uint32_t> bufferIndex, tensorIndex;
  llvm::StringMap<uint32_t> programIndex;
  WalkResult walk = func.walk([&](Operation *op) -> WalkResult {
    if (auto program = dyn_cast<plan::ProgramOp>(op)) {
      if (programIndex.count(program.getName())) {
        program.emitOpError() << "repeats program '" << program.getName()
                              << "'";
        return WalkResult::interrupt();
      }
      if (!plan.programs.empty())
        plan.programs.back().numInstrs =
            plan.instrs.size() - plan.programs.back().firstInstr;
      programIndex[program.getName()] = plan.programs.size();
      rt::PlanProgram p;
      p.name = program.getName().str();
      p.firstInstr = plan.instrs.size();
      plan.programs.push_back(std::move(p));
      return WalkResult::advance();
    }
    if (auto alloc = dyn_cast<plan::BufferAllocOp>(op)) {
      auto live = alloc.getLive();
      auto offset = alloc.getOffset();
      if (!live || !offset) {
        alloc.emitOpError("has no live range or offset: run "
                          "colossal-assign-offsets first");
        return WalkResult::interrupt();
      }
      rt::PlanBuffer buf;
      buf.name = locationName(alloc.getLoc());
      buf.arena = alloc.getSpace() == plan::MemorySpace::device ? 0 : 1;
      buf.offsetBytes = static_cast<uint64_t>(*offset);
      buf.sizeBytes = static_cast<uint64_t>(alloc.getSize());
      buf.alignBytes = static_cast<uint64_t>(alloc.getAlign());
      buf.liveStart = static_cast<uint32_t>((*live)[0]);
      buf.liveEnd = static_cast<uint32_t>((*live)[1]);
      bufferIndex[alloc.getResult()] = plan.buffers.size();
      plan.buffers.push_back(std::move(buf));
      return WalkResult::advance();
    }
    if (auto view = dyn_cast<plan::ViewOp>(op)) {
      auto it = bufferIndex.find(view.getBuffer());
      if (it == bufferIndex.end()) {
        view.emitOpError("views a buffer that is not a cplan.buffer.alloc");
        return WalkResult::interrupt();
      }
      rt::PlanTensor t;
      t.name = locationName(view.getLoc());
      t.buffer = it->second;
      t.byteOffset = static_cast<uint64_t>(view.getByteOffset());
      t.type = *toTensorType(view.getType());
      tensorIndex[view.getResult()] = plan.tensors.size();
      plan.tensors.push_back(std::move(t));
      return WalkResult::advance();
    }
    auto tensorOf = [&](Value v) { return tensorIndex.lookup(v); };
    if (auto kernel = dyn_cast<plan::KernelOp>(op)) {
      StringRef name = kernel.getOp();
      const rt::OpInfo *info =
          rt::lookupOp(std::string_view(name.data(), name.size()));
      if (!info) {
        kernel.emitOpError() << "names no op-table kernel: '" << name << "'";
        return WalkResult::interrupt();
      }
      SmallVector<Type> outTypes(kernel.getOuts().getTypes());
      auto attrs = attrsFromMlir(kernel.getLoc(), info->kind,
                                 kernel.getParams(), outTypes);
      if (failed(attrs))
        return WalkResult::interrupt();
      rt::PlanInstr instr;
      instr.attrs = *attrs;
      instr.stream = static_cast<uint32_t>(kernel.getStream());
      for (Value v : kernel.getIns())
        instr.inputs.push_back(tensorOf(v));
      for (Value v : kernel.getOuts())
        instr.outputs.push_back(tensorOf(v));
      instr.location = locationName(kernel.getLoc());
      plan.instrs.push_back(std::move(instr));
      return WalkResult::advance();
    }
    if (auto copy = dyn_cast<plan::CopyOp>(op)) {
      rt::PlanInstr instr;
      instr.attrs = rt::Attrs(rt::OpKind::Identity);
      instr.stream = static_cast<uint32_t>(copy.getStream());
      instr.inputs.push_back(tensorOf(copy.getSource()));
      instr.outputs.push_back(tensorOf(copy.getTarget()));
      instr.location = locationName(copy.getLoc());
      plan.instrs.push_back(std::move(instr));
      return WalkResult::advance();
    }
    if (auto record = dyn_cast<plan::EventRecordOp>(op)) {
      rt::PlanInstr instr;
      instr.attrs = rt::Attrs(rt::OpKind::EventRecord);
      instr.attrs.setI("event", static_cast<int64_t>(record.getEvent()));
      instr.stream = static_cast<uint32_t>(record.getStream());
      instr.location = locationName(record.getLoc());
      plan.instrs.push_back(std::move(instr));
      return WalkResult::advance();
    }
    if (auto wait = dyn_cast<plan::EventWaitOp>(op)) {
      rt::PlanInstr instr;
      instr.attrs = rt::Attrs(rt::OpKind::EventWait);
      instr.attrs.setI("event", static_cast<int64_t>(wait.getEvent()));
      instr.stream = static_cast<uint32_t>(wait.getStream());
      instr.location = locationName(wait.getLoc());
      plan.instrs.push_back(std::move(instr));
      return WalkResult::advance();
    }
    if (auto bind = dyn_cast<plan::BindOp>(op)) {
      rt::PlanBinding binding;
      switch (bind.getRole()) {
      case plan::BindingRole::input:
        binding.role = rt::BindingRole::kInput;
        break;
      case plan::BindingRole::output:
        binding.role = rt::BindingRole::kOutput;
        break;
      case plan::BindingRole::weight:
        binding.role = rt::BindingRole::kWeight;
        break;
      case plan::BindingRole::constant:
        binding.role = rt::BindingRole::kConstant;
        break;
      case plan::BindingRole::state:
        binding.role = rt::BindingRole::kState;
        break;
      }
      binding.name = bind.getName().str();
      if (auto program = bind.getProgram()) {
        auto it = programIndex.find(*program);
        if (it == programIndex.end()) {
          bind.emitOpError() << "names program '" << *program
                             << "', which no cplan.program starts before it";
          return WalkResult::interrupt();
        }
        binding.program = it->second;
      }
      binding.trainable = bind.getTrainable();
      if (auto init = bind.getInit()) {
        if (*init == "zeros")
          binding.init = rt::InitKind::kZeros;
        else if (*init == "ones")
          binding.init = rt::InitKind::kOnes;
        else if (*init == "normal")
          binding.init = rt::InitKind::kNormal;
        else {
          bind.emitOpError() << "has an unknown init rule '" << *init << "'";
          return WalkResult::interrupt();
        }
      }
      if (auto scale = bind.getInitScale())
        binding.initScale = scale->convertToDouble();
      if (auto exportName = bind.getExportName())
        binding.exportName = exportName->str();
      binding.tensor = tensorOf(bind.getView());
      if (auto value = bind.getValue())
        binding.data = constantBytes(
            *value, plan.tensors[binding.tensor].type);
      plan.bindings.push_back(std::move(binding));
      return WalkResult::advance();
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  if (!plan.programs.empty())
    plan.programs.back().numInstrs =
        plan.instrs.size() - plan.programs.back().firstInstr;
  if (auto config = func->getParentOfType<ModuleOp>()
                        ->getAttrOfType<StringAttr>("colossal.train_config"))
    plan.trainConfig = config.str();
  rt::Status st = rt::validatePlan(plan);
  if (!st.isOk())
    return func.emitOpError() << "produced an invalid plan: " << st.message();
  return plan;
}
