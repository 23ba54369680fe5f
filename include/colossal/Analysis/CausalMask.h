//===- CausalMask.h - Is an attention bias the causal mask ------*- C++ -*-===//
//
// The analysis behind colossal-fuse-attention's causal recognition, kept
// apart from the IR. An additive attention bias (right-aligned against the
// scores [B, H, S, T]) is described either by its values or by the
// expression that computes it: a DAG of op-table ops over constant leaves
// (HF's mask: iota-like index constants, less_equal, and, where(0, min)).
// The expression is evaluated exactly with the runtime's CPU kernels (the
// same code the importer folds with and the CPU backend runs), on tensors
// whose dims along which the value cannot vary are collapsed to 1, so that
// an [8, 1, 1024, 1024] mask built from [1, 1, 1024, 1] and [1, 1, 1, 1024]
// index tensors costs one 1024 x 1024 grid, and a batch broadcast is proved
// uniform rather than assumed. The grid is then checked element by element.
// Unit-tested in unittests/CausalMaskTest.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_ANALYSIS_CAUSALMASK_H
#define COLOSSAL_ANALYSIS_CAUSALMASK_H

#include "colossal/runtime/OpTable.h"
#include "colossal/runtime/Tensor.h"

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace mlir::colossal {

/// A bias value at or below this masks its key exactly: exp(x - max) is 0
/// in double for any finite score, as exp(-inf) is. It admits -inf and the
/// lowest finite f32/bf16 (HF's finfo.min), and their sums; not -1e4 or
/// f16's -65504, whose masking depends on the scores' range.
inline constexpr double kMaskedAtOrBelow = -1e30;

/// What a bias is, as attention's `causal` flag sees it.
struct MaskShape {
  bool causal = false;        ///< every j > i + T - S is masked, no row empty
  bool zeroElsewhere = false; ///< and every other entry is exactly 0
};

/// Classifies a bias of `dims` (rank <= 4, right-aligned against
/// [B, H, S, T]; its last two dims must be `rows` = S and `cols` = T for a
/// causal answer), with `values` row-major (every leading index is its own
/// S x T matrix, and each must pass). A mask that closes a whole row is not
/// causal: unfused, such a row is uniform; fused with causal, it is 0.
MaskShape classifyMask(llvm::ArrayRef<double> values,
                       llvm::ArrayRef<int64_t> dims, int64_t rows,
                       int64_t cols);

/// One node of a bias expression. A leaf has `constant` set, and its dims
/// may be collapsed: each dim of constant->type is `type.dims[d]` or 1 (the
/// value is the same along d; a splat is all ones). Any other node applies
/// `attrs` to the nodes `operands` (indices of earlier nodes) and has the
/// one result `type`.
struct MaskExprNode {
  std::optional<::colossal::runtime::HostTensor> constant;
  ::colossal::runtime::Attrs attrs;
  std::vector<unsigned> operands;
  ::colossal::runtime::TensorType type;
};

/// Evaluates the last node of `nodes` (in topological order) exactly, as
/// the CPU kernels would. The result has the last node's dtype and rank;
/// each dim is the full dim or 1, where 1 means proved constant along it.
/// Elementwise ops (with broadcasting), transpose and expand run on the
/// collapsed operands; any other single-result op runs on operands expanded
/// to their full types. std::nullopt when a node is malformed, a kernel
/// fails, or a tensor it would build exceeds `maxElements`.
std::optional<::colossal::runtime::HostTensor>
evaluateMaskExpr(llvm::ArrayRef<MaskExprNode> nodes, int64_t maxElements);

/// evaluateMaskExpr of `nodes`, then classifyMask of its S x T grids
/// (leading dims left collapsed). Not causal when evaluation fails.
MaskShape classifyMaskExpr(llvm::ArrayRef<MaskExprNode> nodes, int64_t rows,
                           int64_t cols, int64_t maxElements);

/// `t` with every dim along which all its elements are bitwise equal
/// collapsed to 1 (same rank).
::colossal::runtime::HostTensor
collapseUniformDims(const ::colossal::runtime::HostTensor &t);

} // namespace mlir::colossal

#endif // COLOSSAL_ANALYSIS_CAUSALMASK_H
