//===- CudaFusedJitTest.cpp - Generated fused kernels compile -------------===//
//
// COLOSSAL_CUDA_FUSED=jit (cuda/FusedJit.h) without a GPU: the source
// generated for programs of every op the packed kernel takes, every input
// layout (same, row, column, middle, scalar, strided) and each result
// dtype, compiled by NVRTC for sm_90. Whether the kernels compute what
// the interpreters compute needs a GPU: runtime-CudaKernelsTest's
// FusedJitMatchesTheCpuReference.
//
//===----------------------------------------------------------------------===//

#include "cuda/FusedElementwise.h"
#include "cuda/FusedJit.h"

#include "colossal/runtime/FusedProgram.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace colossal::runtime;
using namespace colossal::runtime::cuda;

namespace {

FusedRecord rec(OpKind op, DType dtype, std::vector<int> operands,
                int64_t immediate = 0) {
  FusedRecord r;
  r.op = op;
  r.dtype = dtype;
  r.numOperands = static_cast<int>(operands.size());
  for (size_t k = 0; k < operands.size(); ++k)
    r.operands[k] = operands[k];
  r.immediate = immediate;
  return r;
}

FusedKernelProgram build(const std::vector<FusedRecord> &records,
                         std::vector<double> constants,
                         const std::vector<TensorType> &ins,
                         const TensorType &out) {
  Attrs a(OpKind::FusedElementwise);
  std::vector<int64_t> program;
  for (const FusedRecord &r : records)
    encodeFusedRecord(r, program);
  a.setList("program", program);
  a.setFloatList("constants", std::move(constants));
  a.setList("shape", out.dims);
  FusedKernelProgram p;
  Status st = buildFusedProgram(a, ins, out, p);
  EXPECT_TRUE(st.isOk()) << st.toString();
  return p;
}

constexpr DType f32 = DType::kF32, bf16 = DType::kBF16, f16 = DType::kF16,
                boolean = DType::kBool;

/// Compiles `p`'s source and returns it (empty when NVRTC is missing).
std::string compiles(const FusedKernelProgram &p) {
  EXPECT_TRUE(p.fast);
  std::string source = fusedKernelSource(p);
  std::string why;
  const Nvrtc *nvrtc = Nvrtc::get(why);
  if (!nvrtc) {
    ADD_FAILURE() << "NVRTC: " << why;
    return source;
  }
  std::string ptx;
  Status st = nvrtc->compileToPtx(source, "compute_90", ptx);
  EXPECT_TRUE(st.isOk()) << st.toString();
  EXPECT_NE(ptx.find(".entry colossal_fused"), std::string::npos) << ptx;
  return source;
}

TEST(FusedJit, TheMlpTailCompilesWithItsLayoutsWrittenIn) {
  // OPT's bias + relu: bf16 [8192, 8192] + f32 bias [8192] (a row).
  FusedKernelProgram p =
      build({rec(OpKind::Cast, bf16, {0}), rec(OpKind::Add, bf16, {2, 1}),
             rec(OpKind::Relu, bf16, {3})},
            {}, {{f32, {8192}}, {bf16, {8192, 8192}}}, {bf16, {8192, 8192}});
  std::string src = compiles(p);
  EXPECT_NE(src.find("(i % (u32)8192)"), std::string::npos) << src;
  EXPECT_NE(src.find("rbf((r2 + r1))"), std::string::npos) << src;
  EXPECT_NE(src.find("((u16 *)out)[i] = f2bf(r4);"), std::string::npos) << src;
}

TEST(FusedJit, EveryOpAndLayoutCompiles) {
  // Inputs: 0 f32 [6, 10, 64] (same), 1 f16 [1, 10, 1] (middle), 2 bf16
  // [6, 1, 64] (not affine: a strided walk), 3 bool [6, 1, 1] (column), 4
  // f32 [] (scalar).
  std::vector<TensorType> ins = {{f32, {6, 10, 64}},
                                 {f16, {1, 10, 1}},
                                 {bf16, {6, 1, 64}},
                                 {boolean, {6, 1, 1}},
                                 {f32, {}}};
  // Programs hold at most 21 records: the ops in two programs.
  std::vector<FusedRecord> arith = {
      rec(OpKind::Cast, f32, {1}),          // 5
      rec(OpKind::Cast, f32, {2}),          // 6
      rec(OpKind::Add, f32, {0, 5}),        // 7
      rec(OpKind::Sub, f32, {7, 6}),        // 8
      rec(OpKind::Mul, f32, {8, 4}),        // 9
      rec(OpKind::Div, f32, {9, 4}),        // 10
      rec(OpKind::Pow, f32, {10, 4}),       // 11
      rec(OpKind::Max, f32, {11, 0}),       // 12
      rec(OpKind::Min, f32, {12, 0}),       // 13
      rec(OpKind::Neg, f32, {13}),          // 14
      rec(OpKind::Abs, f32, {14}),          // 15
      rec(OpKind::Exp, f32, {15}),          // 16
      rec(OpKind::Log, f32, {16}),          // 17
      rec(OpKind::Sqrt, f32, {17}),         // 18
      rec(OpKind::Rsqrt, f32, {18}),        // 19
      rec(OpKind::Reciprocal, f32, {19}),   // 20
      rec(OpKind::Tanh, f32, {20}),         // 21
      rec(OpKind::Sigmoid, f32, {21}),      // 22
      rec(OpKind::Relu, f32, {22}),         // 23
      rec(OpKind::Erf, f32, {23}),          // 24
      rec(OpKind::Cast, bf16, {24})};       // 25
  compiles(build(arith, {}, ins, {bf16, {6, 10, 64}}));
  std::vector<FusedRecord> r = {
      rec(OpKind::Sin, f32, {0}),             // 5
      rec(OpKind::Cos, f32, {5}),             // 6
      rec(OpKind::Gelu, f32, {6}, 0),         // 7
      rec(OpKind::Gelu, f32, {7}, 1),         // 8
      rec(OpKind::Greater, boolean, {8, 4}),  // 9
      rec(OpKind::And, boolean, {9, 3}),      // 10
      rec(OpKind::Or, boolean, {10, 3}),      // 11
      rec(OpKind::Xor, boolean, {11, 9}),     // 12
      rec(OpKind::Not, boolean, {12}),        // 13
      rec(OpKind::Equal, boolean, {13, 3}),   // 14
      rec(OpKind::Fill, f16, {}, 0),          // 15
      rec(OpKind::Cast, f16, {8}),            // 16
      rec(OpKind::Cast, f16, {1}),            // 17
      rec(OpKind::Cast, f16, {2}),            // 18
      rec(OpKind::Add, f16, {16, 17}),        // 19
      rec(OpKind::Mul, f16, {19, 18}),        // 20
      rec(OpKind::Where, f16, {14, 20, 15}),  // 21
  };
  FusedKernelProgram p = build(r, {0.1}, ins, {f16, {6, 10, 64}});
  std::string src = compiles(p);
  if (std::getenv("COLOSSAL_TEST_PRINT_SOURCE"))
    std::printf("%s", src.c_str());
  // The middle input: (i / 64) % 10; the column: i / 640; the scalar: 0.
  EXPECT_NE(src.find("((i / (u32)64) % (u32)10)"), std::string::npos) << src;
  EXPECT_NE(src.find("(i / (u32)640)"), std::string::npos) << src;
  EXPECT_NE(src.find("in4)[0]"), std::string::npos) << src;
  // The strided input walks [6, 10, 64] with strides [64, 0, 1].
  EXPECT_NE(src.find("off2"), std::string::npos) << src;
  // 0.1 as f16: round to odd to float (0x1.99999ap-4 truncated is
  // 0x1.999998p-4, inexact: last bit set, 0x1.99999ap-4), then to f16.
  EXPECT_NE(src.find("rh(0x1.99999ap-4f)"), std::string::npos) << src;
}

TEST(FusedJit, BoolResultsAndLargeCountsCompile) {
  FusedKernelProgram p = build(
      {rec(OpKind::LessEqual, boolean, {0, 1})}, {},
      {{bf16, {3, 5, 7}}, {bf16, {5, 1}}}, {boolean, {3, 5, 7}});
  std::string src = compiles(p);
  EXPECT_NE(src.find("((u8 *)out)[i] = r2 != 0.0f ? 1 : 0;"),
            std::string::npos)
      << src;
  // More than 2^31 elements: 64-bit indices.
  FusedKernelProgram big =
      build({rec(OpKind::Mul, bf16, {0, 1})}, {},
            {{bf16, {3, 1 << 30}}, {bf16, {1 << 30}}}, {bf16, {3, 1 << 30}});
  std::string bigSrc = compiles(big);
  EXPECT_NE(bigSrc.find("long long i"), std::string::npos) << bigSrc;
  EXPECT_NE(bigSrc.find("(i % (long long)1073741824)"), std::string::npos)
      << bigSrc;
}

TEST(FusedJit, ProgramsThePackedKernelDoesNotTakeAreNotGenerated) {
  // An i64 input keeps the program on the interpreters.
  FusedKernelProgram p =
      build({rec(OpKind::Cast, f32, {0}), rec(OpKind::Add, f32, {1, 1})}, {},
            {{DType::kI64, {4}}}, {f32, {4}});
  EXPECT_FALSE(p.fast);
}

} // namespace
