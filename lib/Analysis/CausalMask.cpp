//===- CausalMask.cpp - Is an attention bias exactly the causal mask ------===//

#include "colossal/Analysis/CausalMask.h"

#include "colossal/runtime/Kernels.h"

#include <cstring>

using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

MaskShape mlir::colossal::classifyMask(llvm::ArrayRef<double> values,
                                       llvm::ArrayRef<int64_t> dims,
                                       int64_t rows, int64_t cols) {
  MaskShape shape;
  if (dims.size() < 2 || dims[dims.size() - 2] != rows || dims.back() != cols ||
      rows <= 0 || cols <= 0 || values.size() % (rows * cols) != 0 ||
      values.empty())
    return shape;
  int64_t matrices = static_cast<int64_t>(values.size()) / (rows * cols);
  bool zero = true;
  for (int64_t m = 0; m < matrices; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      bool anyOpen = false;
      for (int64_t j = 0; j < cols; ++j) {
        double x = values[(m * rows + i) * cols + j];
        if (j > i + cols - rows) {
          if (!(x <= kMaskedAtOrBelow))
            return shape;
          continue;
        }
        anyOpen |= x > kMaskedAtOrBelow;
        zero &= x == 0.0;
      }
      // A row the mask closes entirely gives a uniform row unfused but 0
      // fused: keep such masks as biases, where both agree.
      if (!anyOpen)
        return shape;
    }
  }
  shape.causal = true;
  shape.zeroElsewhere = zero;
  return shape;
}

rt::HostTensor mlir::colossal::collapseUniformDims(const rt::HostTensor &t) {
  rt::HostTensor cur = t;
  const size_t elemBytes = rt::dtypeSizeBytes(t.type.dtype);
  for (size_t d = 0; d < cur.type.rank(); ++d) {
    const int64_t n = cur.type.dims[d];
    if (n <= 1)
      continue;
    int64_t outer = 1, inner = 1;
    for (size_t e = 0; e < d; ++e)
      outer *= cur.type.dims[e];
    for (size_t e = d + 1; e < cur.type.rank(); ++e)
      inner *= cur.type.dims[e];
    const size_t sliceBytes = static_cast<size_t>(inner) * elemBytes;
    const uint8_t *base = cur.bytes.data();
    bool uniform = true;
    for (int64_t o = 0; o < outer && uniform; ++o) {
      const uint8_t *first = base + static_cast<size_t>(o * n) * sliceBytes;
      for (int64_t k = 1; k < n && uniform; ++k)
        uniform = std::memcmp(first + static_cast<size_t>(k) * sliceBytes,
                              first, sliceBytes) == 0;
    }
    if (!uniform)
      continue;
    rt::TensorType collapsed = cur.type;
    collapsed.dims[d] = 1;
    rt::HostTensor next(collapsed);
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(next.bytes.data() + static_cast<size_t>(o) * sliceBytes,
                  base + static_cast<size_t>(o * n) * sliceBytes, sliceBytes);
    cur = std::move(next);
  }
  return cur;
}

namespace {

/// Ops that map equal broadcast operand positions to equal results, so that
/// they can run on collapsed operands: the result is the broadcast of the
/// operands, and a dim collapsed in every operand stays collapsed.
bool isElementwise(rt::OpKind kind) {
  switch (kind) {
  case rt::OpKind::Neg:
  case rt::OpKind::Abs:
  case rt::OpKind::Exp:
  case rt::OpKind::Log:
  case rt::OpKind::Sqrt:
  case rt::OpKind::Rsqrt:
  case rt::OpKind::Reciprocal:
  case rt::OpKind::Tanh:
  case rt::OpKind::Sigmoid:
  case rt::OpKind::Relu:
  case rt::OpKind::Erf:
  case rt::OpKind::Sin:
  case rt::OpKind::Cos:
  case rt::OpKind::Gelu:
  case rt::OpKind::Not:
  case rt::OpKind::Identity:
  case rt::OpKind::Cast:
  case rt::OpKind::Add:
  case rt::OpKind::Sub:
  case rt::OpKind::Mul:
  case rt::OpKind::Div:
  case rt::OpKind::Pow:
  case rt::OpKind::Max:
  case rt::OpKind::Min:
  case rt::OpKind::And:
  case rt::OpKind::Or:
  case rt::OpKind::Xor:
  case rt::OpKind::Equal:
  case rt::OpKind::Less:
  case rt::OpKind::LessEqual:
  case rt::OpKind::Greater:
  case rt::OpKind::GreaterEqual:
  case rt::OpKind::Where:
    return true;
  default:
    return false;
  }
}

/// True when every dim of `t` is the matching dim of `full` or 1.
bool isCollapsedOf(const rt::TensorType &t, const rt::TensorType &full) {
  if (t.dtype != full.dtype || t.rank() != full.rank())
    return false;
  for (size_t d = 0; d < t.rank(); ++d)
    if (t.dims[d] != 1 && t.dims[d] != full.dims[d])
      return false;
  return true;
}

/// Runs one single-result op on the CPU, refusing results over the limit.
std::optional<rt::HostTensor> run(const rt::Attrs &attrs,
                                  const std::vector<rt::HostTensor> &inputs,
                                  int64_t maxElements) {
  std::vector<rt::TensorType> inTypes, outTypes;
  for (const rt::HostTensor &t : inputs)
    inTypes.push_back(t.type);
  if (!rt::inferOutputTypes(attrs, inTypes, outTypes).isOk() ||
      outTypes.size() != 1 || outTypes[0].numElements() > maxElements)
    return std::nullopt;
  std::vector<rt::HostTensor> outs;
  if (!rt::evaluateOp(attrs, inputs, outs).isOk() || outs.size() != 1)
    return std::nullopt;
  return std::move(outs[0]);
}

/// `t` (collapsed) broadcast to `dims`.
std::optional<rt::HostTensor> expandTo(const rt::HostTensor &t,
                                       const std::vector<int64_t> &dims,
                                       int64_t maxElements) {
  if (t.type.dims == dims)
    return t;
  rt::Attrs attrs(rt::OpKind::Expand);
  attrs.setList("shape", dims);
  return run(attrs, {t}, maxElements);
}

} // namespace

std::optional<rt::HostTensor>
mlir::colossal::evaluateMaskExpr(llvm::ArrayRef<MaskExprNode> nodes,
                                 int64_t maxElements) {
  if (nodes.empty())
    return std::nullopt;
  std::vector<rt::HostTensor> values;
  values.reserve(nodes.size());
  for (const MaskExprNode &node : nodes) {
    if (node.constant) {
      if (!node.operands.empty() ||
          !isCollapsedOf(node.constant->type, node.type) ||
          node.constant->bytes.size() != node.constant->type.sizeBytes() ||
          node.constant->type.numElements() > maxElements)
        return std::nullopt;
      values.push_back(collapseUniformDims(*node.constant));
      continue;
    }
    const rt::OpKind kind = node.attrs.kind();
    if (rt::opInfo(kind).numOutputs != 1)
      return std::nullopt;
    std::vector<rt::HostTensor> inputs;
    for (unsigned idx : node.operands) {
      if (idx >= values.size())
        return std::nullopt;
      inputs.push_back(values[idx]);
    }
    std::optional<rt::HostTensor> result;
    if (isElementwise(kind) || kind == rt::OpKind::Transpose) {
      // Equal inputs along a dim give equal outputs along it (for
      // transpose, along the permuted dim): run on the collapsed forms.
      result = run(node.attrs, inputs, maxElements);
    } else if (kind == rt::OpKind::Expand && inputs.size() == 1 &&
               inputs[0].type.rank() <= node.type.rank()) {
      // Broadcasting adds no variation: right-align, with leading 1s.
      rt::HostTensor t = std::move(inputs[0]);
      t.type.dims.insert(t.type.dims.begin(), node.type.rank() - t.type.rank(),
                         1);
      result = std::move(t);
    } else if (kind == rt::OpKind::Reshape && inputs.size() == 1 &&
               inputs[0].type.numElements() == 1) {
      // A splat stays a splat.
      rt::HostTensor t = std::move(inputs[0]);
      t.type.dims.assign(node.type.rank(), 1);
      result = std::move(t);
    } else {
      // Anything else (reshape, slice, gather, cumsum, range-like
      // arithmetic folded to constants, ...): exactly, at full size.
      for (size_t i = 0; i < inputs.size(); ++i) {
        const rt::TensorType &full = nodes[node.operands[i]].type;
        auto expanded = expandTo(inputs[i], full.dims, maxElements);
        if (!expanded)
          return std::nullopt;
        inputs[i] = std::move(*expanded);
      }
      result = run(node.attrs, inputs, maxElements);
    }
    if (!result || !isCollapsedOf(result->type, node.type))
      return std::nullopt;
    values.push_back(collapseUniformDims(*result));
  }
  return std::move(values.back());
}

MaskShape mlir::colossal::classifyMaskExpr(llvm::ArrayRef<MaskExprNode> nodes,
                                           int64_t rows, int64_t cols,
                                           int64_t maxElements) {
  std::optional<rt::HostTensor> value = evaluateMaskExpr(nodes, maxElements);
  if (!value || value->type.rank() < 2)
    return {};
  // The last two dims at full size (the grid); leading dims stay collapsed,
  // so a batch or head broadcast is one matrix, proved equal.
  const std::vector<int64_t> &full = nodes.back().type.dims;
  std::vector<int64_t> grid = value->type.dims;
  grid[grid.size() - 2] = full[full.size() - 2];
  grid.back() = full.back();
  std::optional<rt::HostTensor> expanded = expandTo(*value, grid, maxElements);
  if (!expanded)
    return {};
  std::vector<double> values = rt::loadAllAsDouble(expanded->ref());
  return classifyMask(values, grid, rows, cols);
}
