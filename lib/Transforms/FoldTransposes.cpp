//===- FoldTransposes.cpp - transpose feeding a matmul -> transpose flag --===//
//
// The ONNX exporters write nn.Linear as Transpose(W, perm [1, 0]) + MatMul,
// and attention's k^T as Transpose(k, perm [0, 1, 3, 2]) + MatMul. The
// matmul op reads either operand transposed for free (`transpose_a`,
// `transpose_b`: the CPU kernel packs it, cuBLASLt takes an op flag), so
// the transposed copy is a kernel and a buffer that buy nothing; worse, a
// weight's bf16 copy is saved for the backward.
//
// The fold, for each matmul operand x:
//
//   x = transpose(s)           perm swaps the last two dims and keeps the
//                              others: the matmul reads s, flag toggled
//   x = cast(transpose(s))     the same through a cast whose only user is
//                              this matmul: the matmul reads a new cast(s),
//                              flag toggled (cast is elementwise, so
//                              cast(transpose(s)) = transpose(cast(s)))
//
// The batch dims are untouched by such a perm, so broadcasting between the
// operands (a rank-2 weight against a rank-3 activation) is unchanged, and
// the matmul's result type stays the same. A transpose (or cast) with other
// users stays for them; the matmul stops depending on it either way.
//
// Numerics: the CPU kernel packs a flagged operand into the same row-major
// matrix a transposed copy would hold (a transpose and the packing both
// copy values exactly), then runs the same products in the same order, so
// results are bitwise those of the unfolded graph. The backward the
// autodiff builds for a flagged operand is the same identity with the same
// products and the same accumulation order, so gradients match too.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphBuilder.h"
#include "colossal/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/TypeUtilities.h"

#define DEBUG_TYPE "colossal-fold-transposes"

namespace mlir::colossal {
#define GEN_PASS_DEF_FOLDTRANSPOSESPASS
#include "colossal/Transforms/Passes.h.inc"
} // namespace mlir::colossal

using namespace mlir;
using namespace mlir::colossal;

namespace {

/// True for a perm of rank >= 2 that swaps the last two dims and keeps
/// every other dim in place: a transpose of each matrix of a batch.
bool swapsLastTwo(ArrayRef<int64_t> perm) {
  size_t rank = perm.size();
  if (rank < 2)
    return false;
  for (size_t d = 0; d + 2 < rank; ++d)
    if (perm[d] != static_cast<int64_t>(d))
      return false;
  return perm[rank - 2] == static_cast<int64_t>(rank - 1) &&
         perm[rank - 1] == static_cast<int64_t>(rank - 2);
}

/// What one matmul operand folds to: the transpose it bypasses and, when
/// the transpose is read through a cast, that cast.
struct OperandFold {
  graph::TransposeOp transpose;
  graph::CastOp cast; ///< null when the matmul reads the transpose directly
};

std::optional<OperandFold> matchOperand(Value operand, Operation *matmul) {
  OperandFold fold;
  Value x = operand;
  if (auto cast = x.getDefiningOp<graph::CastOp>()) {
    // Moving the cast is only free when nothing else reads it.
    for (Operation *user : cast->getUsers())
      if (user != matmul)
        return std::nullopt;
    fold.cast = cast;
    x = cast.getInput();
  }
  fold.transpose = x.getDefiningOp<graph::TransposeOp>();
  if (!fold.transpose || !swapsLastTwo(fold.transpose.getPerm()))
    return std::nullopt;
  return fold;
}

void toggleFlag(graph::MatMulOp matmul, unsigned operandIndex) {
  if (operandIndex == 0)
    matmul.setTransposeA(matmul.getTransposeA() ? 0 : 1);
  else
    matmul.setTransposeB(matmul.getTransposeB() ? 0 : 1);
}

/// Folds every foldable operand of `matmul`; counts the operands folded.
LogicalResult foldMatmul(graph::MatMulOp matmul, unsigned &folded) {
  Operation *op = matmul.getOperation();
  for (unsigned i = 0; i < 2; ++i) {
    std::optional<OperandFold> fold = matchOperand(op->getOperand(i), op);
    if (!fold)
      continue;
    Value source = fold->transpose.getInput();
    Value oldValue = op->getOperand(i);
    if (fold->cast) {
      OpBuilder b(fold->cast);
      GraphBuilder gb(b);
      auto cast = gb.cast(fold->cast.getLoc(), source,
                          getElementTypeOrSelf(oldValue.getType()));
      if (failed(cast))
        return failure();
      source = *cast;
    }
    // Both operands may be the same value (x^T @ x^T): each one read
    // through the bypassed chain folds.
    for (unsigned j = i; j < 2; ++j) {
      if (op->getOperand(j) != oldValue)
        continue;
      op->setOperand(j, source);
      toggleFlag(matmul, j);
      ++folded;
    }
    if (fold->cast && fold->cast->use_empty())
      fold->cast->erase();
    if (fold->transpose->use_empty())
      fold->transpose->erase();
  }
  return success();
}

struct FoldTransposesPass
    : public mlir::colossal::impl::FoldTransposesPassBase<FoldTransposesPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      // Collect first: the rewrite erases ops.
      SmallVector<graph::MatMulOp> matmuls;
      func.walk([&](graph::MatMulOp m) { matmuls.push_back(m); });
      unsigned folded = 0;
      for (graph::MatMulOp m : matmuls)
        if (failed(foldMatmul(m, folded)))
          return signalPassFailure();
      numFolded += folded;
    }
  }
};

} // namespace
