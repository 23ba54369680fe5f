//===- CudaFusedJitTest.cpp - Generated fused kernels compile -------------===//
//
// COLOSSAL_CUDA_FUSED=jit (cuda/FusedJit.h) without a GPU: the source
// generated for programs of every op the packed kernel takes, every input
// layout (same, row, column, middle, scalar, strided) and each result
// dtype, compiled by NVRTC for sm_90, in its scalar and (where the program
// has one) vector form; then the same source built by the host compiler
// and both forms run against the CPU kernels. On the GPU itself:
// runtime-CudaKernelsTest's FusedJitMatchesTheCpuReference.
//
//===----------------------------------------------------------------------===//

#include "cuda/FusedElementwise.h"
#include "cuda/FusedJit.h"

#include "colossal/runtime/FusedProgram.h"
#include "colossal/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

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

Attrs fusedAttrs(const std::vector<FusedRecord> &records,
                 std::vector<double> constants, const TensorType &out) {
  Attrs a(OpKind::FusedElementwise);
  std::vector<int64_t> program;
  for (const FusedRecord &r : records)
    encodeFusedRecord(r, program);
  a.setList("program", program);
  a.setFloatList("constants", std::move(constants));
  a.setList("shape", out.dims);
  return a;
}

FusedKernelProgram build(const std::vector<FusedRecord> &records,
                         std::vector<double> constants,
                         const std::vector<TensorType> &ins,
                         const TensorType &out) {
  Attrs a = fusedAttrs(records, std::move(constants), out);
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
  EXPECT_NE(ptx.find(".entry colossal_fused("), std::string::npos) << ptx;
  // The vector form exactly when the program has a vector plan.
  bool vector = fusedVectorPlan(p).width > 0;
  EXPECT_EQ(ptx.find(".entry colossal_fused_vec(") != std::string::npos,
            vector)
      << ptx;
  EXPECT_EQ(source.find("colossal_fused_vec") != std::string::npos, vector);
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
  // The ReLU of a bf16 value is one: no rounding, and the store truncates
  // (f2bfx) rather than rounds.
  EXPECT_NE(src.find("float r4 = (r3 < 0.0f ? 0.0f : r3);"), std::string::npos)
      << src;
  EXPECT_NE(src.find("((u16 *)out)[i] = f2bfx(r4);"), std::string::npos)
      << src;
  // The vector form: 8 bf16 a thread (16 bytes of x and of the result),
  // the f32 bias row in two 16-byte loads at i0 % 8192.
  FusedVectorPlan plan = fusedVectorPlan(p);
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.inAlignBytes[0], 16);
  EXPECT_EQ(plan.inAlignBytes[1], 16);
  EXPECT_EQ(plan.outAlignBytes, 16);
  for (const char *part :
       {"const u32 packs = 8388608u;", "const u32 i0 = q * 8u;",
        "const uint4 w0_0 = *(const uint4 *)((const float *)in0 + (i0 % "
        "(u32)8192));",
        "const uint4 w0_1 = *(const uint4 *)((const float *)in0 + (i0 % "
        "(u32)8192) + 4);",
        "const uint4 w1_0 = *(const uint4 *)((const u16 *)in1 + i0);",
        "float r0_5 = __uint_as_float(w0_1.y);",
        "float r1_3 = bf2f((u16)(w1_0.y >> 16));",
        "float r3_7 = rbf((r2_7 + r1_7));",
        "float r4_6 = (r3_6 < 0.0f ? 0.0f : r3_6);",
        "o_0.w = (u32)f2bfx(r4_6) | ((u32)f2bfx(r4_7) << 16);",
        "*(uint4 *)((u16 *)out + i0) = o_0;"})
    EXPECT_NE(src.find(part), std::string::npos) << part << "\n" << src;
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
  // In the vector form (8 a thread): the middle input and the column are
  // one load a pack (64 and 640 are multiples of 8), as is the scalar;
  // the strided input walks once and steps along its rows of 64.
  FusedVectorPlan plan = fusedVectorPlan(p);
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kStep);
  EXPECT_EQ(plan.mode[3], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[4], FusedVectorPlan::kUniform);
  EXPECT_NE(src.find("float r1 = h2f(((const u16 *)in1)[((i0 / (u32)64) % "
                     "(u32)10)]);"),
            std::string::npos)
      << src;
  EXPECT_NE(src.find("float r2_7 = bf2f(((const u16 *)in2)[(off2 + 7)]);"),
            std::string::npos)
      << src;
  // The fill is computed once for all lanes.
  EXPECT_NE(src.find("float r15 = rh(0x1.99999ap-4f);"), std::string::npos)
      << src;
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
  // 105 elements: not a multiple of 8, so no vector form.
  EXPECT_EQ(fusedVectorPlan(p).width, 0);
  // More than 2^31 elements: 64-bit indices.
  FusedKernelProgram big =
      build({rec(OpKind::Mul, bf16, {0, 1})}, {},
            {{bf16, {3, 1 << 30}}, {bf16, {1 << 30}}}, {bf16, {3, 1 << 30}});
  std::string bigSrc = compiles(big);
  EXPECT_NE(bigSrc.find("long long i"), std::string::npos) << bigSrc;
  EXPECT_NE(bigSrc.find("(i % (long long)1073741824)"), std::string::npos)
      << bigSrc;
  EXPECT_NE(bigSrc.find("const long long i0 = q * 8ll;"), std::string::npos)
      << bigSrc;
  EXPECT_NE(bigSrc.find("((const u16 *)in1 + (i0 % (long long)1073741824))"),
            std::string::npos)
      << bigSrc;
}

TEST(FusedJit, ProgramsThePackedKernelDoesNotTakeAreNotGenerated) {
  // An i64 input keeps the program on the interpreters.
  FusedKernelProgram p =
      build({rec(OpKind::Cast, f32, {0}), rec(OpKind::Add, f32, {1, 1})}, {},
            {{DType::kI64, {4}}}, {f32, {4}});
  EXPECT_FALSE(p.fast);
}


// ---- The generated code run on the CPU -------------------------------------
//
// The source NVRTC compiles, built here by the host C++ compiler with shims
// for the few CUDA builtins it names (one "thread" walks the whole grid),
// and run against the CPU kernels (evaluateOp): the generated code's
// semantics, checked without a GPU. The CPU computes each op in double and
// rounds once to its dtype, which equals the f32 operation rounded to the
// dtype for + - * /, sqrt, comparisons, casts and where; those programs
// must match bit for bit. Transcendentals (glibc's expf here, CUDA's on a
// GPU) within 1e-6 relative.

constexpr const char *kHostShims = R"(#include <math.h>
#include <string.h>
#define __global__
#define __device__
#define __forceinline__ inline
struct colossal_dim3 { unsigned x, y, z; };
static colossal_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static colossal_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
)";

/// Builds `source` into a shared object and calls `entry` (colossal_fused
/// or colossal_fused_vec) on the inputs' bytes; false (with a failure
/// recorded) when it does not build.
bool runOnHost(const std::string &source, const std::vector<HostTensor> &ins,
               HostTensor &out, const char *entry = "colossal_fused") {
  const char *tmp = std::getenv("TMPDIR");
  std::string dirTemplate =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/colossal-jit-XXXXXX";
  std::vector<char> dirChars(dirTemplate.begin(), dirTemplate.end());
  dirChars.push_back('\0');
  char *dir = dirChars.data();
  if (!mkdtemp(dir)) {
    ADD_FAILURE() << "mkdtemp failed";
    return false;
  }
  std::string src = std::string(dir) + "/k.cpp", lib = std::string(dir) + "/k.so";
  std::ofstream(src) << kHostShims << source;
  std::string cmd = std::string(COLOSSAL_HOST_CXX) +
                    " -x c++ -std=c++17 -O1 -ffp-contract=off -fno-fast-math "
                    "-fno-strict-aliasing -shared -fPIC -o " +
                    lib + " " + src + " 2>&1";
  FILE *pipe = popen(cmd.c_str(), "r");
  std::string log;
  char buf[512];
  while (pipe && fgets(buf, sizeof(buf), pipe))
    log += buf;
  int rc = pipe ? pclose(pipe) : -1;
  if (rc != 0) {
    ADD_FAILURE() << cmd << "\n" << log << "\n" << source;
    return false;
  }
  void *handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  void *fn = handle ? dlsym(handle, entry) : nullptr;
  if (!fn) {
    ADD_FAILURE() << "dlopen/dlsym " << lib << ": " << dlerror();
    return false;
  }
  const void *p[kMaxFusedInputs] = {};
  for (size_t k = 0; k < ins.size(); ++k)
    p[k] = ins[k].bytes.data();
  void *o = out.bytes.data();
  using V = const void *;
  switch (ins.size()) {
  case 1:
    reinterpret_cast<void (*)(V, void *)>(fn)(p[0], o);
    break;
  case 2:
    reinterpret_cast<void (*)(V, V, void *)>(fn)(p[0], p[1], o);
    break;
  case 3:
    reinterpret_cast<void (*)(V, V, V, void *)>(fn)(p[0], p[1], p[2], o);
    break;
  case 4:
    reinterpret_cast<void (*)(V, V, V, V, void *)>(fn)(p[0], p[1], p[2], p[3],
                                                       o);
    break;
  case 5:
    reinterpret_cast<void (*)(V, V, V, V, V, void *)>(fn)(p[0], p[1], p[2],
                                                          p[3], p[4], o);
    break;
  default:
    ADD_FAILURE() << "add a call for " << ins.size() << " inputs";
  }
  dlclose(handle);
  std::remove(src.c_str());
  std::remove(lib.c_str());
  rmdir(dir);
  return true;
}

HostTensor randomTensor(const TensorType &type, std::mt19937 &gen,
                        double lo = -3.0, double hi = 3.0) {
  HostTensor t(type);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < type.numElements(); ++i) {
    if (type.dtype == boolean)
      storeFromInt64(t.ref(), i, dist(gen) > 0 ? 1 : 0);
    else
      storeFromDouble(t.ref(), i, dist(gen));
  }
  return t;
}

/// Runs records on random inputs on the CPU and through the generated
/// code: the scalar kernel, then the vector kernel when the program has
/// one (NVRTC compiles the source as well); `tolerance` 0: bit for bit.
/// Returns the program's vector plan.
FusedVectorPlan matchesTheCpu(const std::vector<FusedRecord> &records,
                              std::vector<double> constants,
                              const std::vector<TensorType> &inTypes,
                              const TensorType &outType,
                              double tolerance = 0.0) {
  std::mt19937 gen(7);
  std::vector<HostTensor> ins;
  for (const TensorType &t : inTypes)
    ins.push_back(randomTensor(t, gen));
  Attrs attrs = fusedAttrs(records, constants, outType);
  std::vector<HostTensor> cpu;
  Status st = evaluateOp(attrs, ins, cpu);
  EXPECT_TRUE(st.isOk()) << st.toString();
  FusedKernelProgram p;
  EXPECT_TRUE(buildFusedProgram(attrs, inTypes, outType, p).isOk());
  EXPECT_TRUE(p.fast);
  if (!st.isOk() || !p.fast)
    return {};
  FusedVectorPlan plan = fusedVectorPlan(p);
  std::string source = compiles(p);
  for (const char *entry : {"colossal_fused", "colossal_fused_vec"}) {
    if (plan.width == 0 && std::strcmp(entry, "colossal_fused_vec") == 0)
      break;
    HostTensor host(outType);
    std::memset(host.bytes.data(), 0xff, host.bytes.size());
    if (!runOnHost(source, ins, host, entry))
      return plan;
    int64_t n = outType.numElements(), off = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      double a = loadAsDouble(cpu[0].ref(), i), b = loadAsDouble(host.ref(), i);
      bool same = (std::isnan(a) && std::isnan(b)) || a == b;
      if (tolerance == 0.0) {
        if (!same && off++ < 5)
          ADD_FAILURE() << entry << ": element " << i << ": cpu " << a
                        << ", generated " << b;
      } else if (!same) {
        double err = std::fabs(a - b) / std::max(1e-30, std::fabs(a));
        worst = std::max(worst, err);
      }
    }
    EXPECT_EQ(off, 0) << entry << ": " << off << " of " << n
                      << " elements differ";
    EXPECT_LE(worst, tolerance) << entry;
  }
  return plan;
}

TEST(FusedJitOnHost, BiasReluInBf16MatchesBitForBit) {
  // Vector form: x and the result in 16-byte packs of 8 bf16, the f32
  // bias row (96, a multiple of 8) in two 16-byte loads.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Cast, bf16, {0}), rec(OpKind::Add, bf16, {2, 1}),
       rec(OpKind::Relu, bf16, {3})},
      {}, {{f32, {96}}, {bf16, {64, 96}}}, {bf16, {64, 96}});
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kVector);
}

TEST(FusedJitOnHost, ExactValuesSkipTheirRoundingBitForBit) {
  // Value-preserving ops on bf16 values (neg, abs, max, min, a select,
  // relu, a cast to bf16) need no rounding, and the result stores by
  // truncation; inputs with infinities, NaNs (quiet and signalling), signed
  // zeros and the largest finite bf16 among random values, compared bit
  // for bit with the CPU (every NaN bit included).
  const std::vector<FusedRecord> records = {
      rec(OpKind::Neg, bf16, {0}),       // 3
      rec(OpKind::Abs, bf16, {1}),       // 4
      rec(OpKind::Max, bf16, {3, 4}),    // 5
      rec(OpKind::Min, bf16, {5, 1}),    // 6
      rec(OpKind::Where, bf16, {2, 6, 0}), // 7
      rec(OpKind::Relu, bf16, {7}),      // 8
      rec(OpKind::Cast, bf16, {8})};     // 9
  const std::vector<TensorType> inTypes = {
      {bf16, {4, 64}}, {bf16, {4, 64}}, {boolean, {4, 64}}};
  const TensorType outType{bf16, {4, 64}};
  std::mt19937 gen(11);
  std::vector<HostTensor> ins;
  for (const TensorType &t : inTypes)
    ins.push_back(randomTensor(t, gen));
  const uint16_t specials[] = {0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffc1,
                               0x0000, 0x8000, 0x7f7f, 0xff7f, 0x0001};
  for (int k = 0; k < 2; ++k)
    for (size_t j = 0; j < sizeof specials / sizeof specials[0]; ++j)
      std::memcpy(ins[k].bytes.data() + 2 * (7 * j + k), &specials[j], 2);
  Attrs attrs = fusedAttrs(records, {}, outType);
  std::vector<HostTensor> cpu;
  ASSERT_TRUE(evaluateOp(attrs, ins, cpu).isOk());
  FusedKernelProgram p;
  ASSERT_TRUE(buildFusedProgram(attrs, inTypes, outType, p).isOk());
  ASSERT_TRUE(p.fast);
  std::string source = compiles(p);
  // No rounding in the kernels (past the prelude's helpers).
  EXPECT_EQ(source.find("rbf(", source.find("void colossal_fused(")),
            std::string::npos)
      << source;
  EXPECT_NE(source.find("((u16 *)out)[i] = f2bfx("), std::string::npos);
  for (const char *entry : {"colossal_fused", "colossal_fused_vec"}) {
    HostTensor host(outType);
    std::memset(host.bytes.data(), 0xff, host.bytes.size());
    ASSERT_TRUE(runOnHost(source, ins, host, entry)) << entry;
    EXPECT_EQ(host.bytes, cpu[0].bytes) << entry;
  }
}

TEST(FusedJitOnHost, Bf16ChainWithAScalarAndGeluMatchesWithinABf16Ulp) {
  // x * s + y, gelu, times a fill, minus the scalar: the scalar and the
  // fill are one register for all 8 lanes. tanhf in f32 here, tanh in f64
  // on the CPU: a bf16 ulp (2^-8) apart at most.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Mul, bf16, {0, 1}),     // 3
       rec(OpKind::Add, bf16, {3, 2}),     // 4
       rec(OpKind::Gelu, bf16, {4}, 1),    // 5
       rec(OpKind::Fill, bf16, {}, 0),     // 6
       rec(OpKind::Mul, bf16, {5, 6}),     // 7
       rec(OpKind::Sub, bf16, {7, 1}),     // 8
       rec(OpKind::Max, bf16, {8, 0})},    // 9
      {0.7}, {{bf16, {40, 64}}, {bf16, {}}, {bf16, {40, 64}}},
      {bf16, {40, 64}}, 1e-2);
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kVector);
}

TEST(FusedJitOnHost, Bf16ChainWithAScalarMatchesBitForBit) {
  // As above with a division for the gelu: bit for bit.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Mul, bf16, {0, 1}), rec(OpKind::Add, bf16, {3, 2}),
       rec(OpKind::Fill, bf16, {}, 0), rec(OpKind::Div, bf16, {4, 5}),
       rec(OpKind::Sub, bf16, {6, 1}), rec(OpKind::Max, bf16, {7, 0})},
      {0.7}, {{bf16, {40, 64}}, {bf16, {}}, {bf16, {40, 64}}},
      {bf16, {40, 64}});
  EXPECT_EQ(plan.width, 8);
}

TEST(FusedJitOnHost, ATailKeepsTheScalarForm) {
  // 7 x 143 = 1001 elements, not a multiple of 8: no vector kernel.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Cast, bf16, {0}), rec(OpKind::Add, bf16, {2, 1}),
       rec(OpKind::Relu, bf16, {3})},
      {}, {{f32, {143}}, {bf16, {7, 143}}}, {bf16, {7, 143}});
  EXPECT_EQ(plan.width, 0);
}

TEST(FusedJitOnHost, PerLaneLayoutsAndBoolPacksMatchBitForBit) {
  // [4, 6, 12], 8 a thread: a bf16 and a bool input in packs (16 and 8
  // bytes), an f32 row of 12 and an f16 middle [6, 1] (div 12) addressed
  // per lane (12 is not a multiple of 8), a strided bf16 [4, 1, 12] walked
  // per lane, a bool result stored 8 bytes at a time.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Cast, f32, {0}),          // 5
       rec(OpKind::Mul, f32, {5, 2}),        // 6
       rec(OpKind::Cast, f32, {3}),          // 7
       rec(OpKind::Sub, f32, {6, 7}),        // 8
       rec(OpKind::Cast, f32, {4}),          // 9
       rec(OpKind::Greater, boolean, {8, 9}), // 10
       rec(OpKind::Xor, boolean, {10, 1})},  // 11
      {},
      {{bf16, {4, 6, 12}},
       {boolean, {4, 6, 12}},
       {f32, {12}},
       {f16, {6, 1}},
       {bf16, {4, 1, 12}}},
      {boolean, {4, 6, 12}});
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kLanes);
  EXPECT_EQ(plan.mode[3], FusedVectorPlan::kLanes);
  EXPECT_EQ(plan.mode[4], FusedVectorPlan::kLanes);
  EXPECT_EQ(plan.outAlignBytes, 8);
}

TEST(FusedJitOnHost, F32PacksOfFourMatchBitForBit) {
  // Only f32 at full size: 4 a thread. A bf16 row of 20 (8-byte loads), a
  // bool row of 20 (4-byte loads), an f32 column (div 20: one load).
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Cast, f32, {1}),          // 4
       rec(OpKind::Add, f32, {0, 4}),        // 5
       rec(OpKind::Mul, f32, {5, 3}),        // 6
       rec(OpKind::Where, f32, {2, 6, 0})},  // 7
      {}, {{f32, {8, 20}}, {bf16, {20}}, {boolean, {20}}, {f32, {8, 1}}},
      {f32, {8, 20}});
  EXPECT_EQ(plan.width, 4);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[3], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.inAlignBytes[1], 8);
  EXPECT_EQ(plan.inAlignBytes[2], 4);
}

TEST(FusedJitOnHost, StridedInputsWalkOncePerPack) {
  // [4, 5, 6, 8] f32, 4 a thread: f16 [4, 1, 6, 1] is not (i / div) % mod
  // but is the same across a pack (innermost stride 0); bf16 [4, 1, 6, 8]
  // steps by 1 from one walk.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Cast, f32, {1}), rec(OpKind::Cast, f32, {2}),
       rec(OpKind::Mul, f32, {0, 3}), rec(OpKind::Sub, f32, {5, 4})},
      {}, {{f32, {4, 5, 6, 8}}, {f16, {4, 1, 6, 1}}, {bf16, {4, 1, 6, 8}}},
      {f32, {4, 5, 6, 8}});
  EXPECT_EQ(plan.width, 4);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kStep);
}

TEST(FusedJitOnHost, MasksAndWhereMatchBitForBit) {
  // Bools as floats, a row, a column and a scalar, a fill, f32 result.
  matchesTheCpu({rec(OpKind::Greater, boolean, {0, 3}),  // 4
                 rec(OpKind::And, boolean, {4, 2}),      // 5
                 rec(OpKind::Cast, f32, {1}),            // 6
                 rec(OpKind::Where, f32, {5, 0, 6}),     // 7
                 rec(OpKind::Not, boolean, {5}),         // 8
                 rec(OpKind::Cast, f32, {8}),            // 9
                 rec(OpKind::Mul, f32, {7, 9}),          // 10
                 rec(OpKind::Fill, f32, {}, 0),          // 11
                 rec(OpKind::Div, f32, {10, 11}),        // 12
                 rec(OpKind::Or, boolean, {5, 8}),       // 13
                 rec(OpKind::Where, f32, {13, 12, 11})}, // 14
                {0.3}, {{f32, {33, 37}}, {bf16, {37}}, {boolean, {33, 1}}, {f32, {}}},
                {f32, {33, 37}});
  // 33 x 37 = 1221 elements: scalar form only. The same program at
  // [32, 40] has a vector form (8 a thread: the bool column's div 40 is one
  // load a pack, the bf16 row of 40 a pack).
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Greater, boolean, {0, 3}), rec(OpKind::And, boolean, {4, 2}),
       rec(OpKind::Cast, f32, {1}), rec(OpKind::Where, f32, {5, 0, 6}),
       rec(OpKind::Not, boolean, {5}), rec(OpKind::Cast, f32, {8}),
       rec(OpKind::Mul, f32, {7, 9}), rec(OpKind::Fill, f32, {}, 0),
       rec(OpKind::Div, f32, {10, 11}), rec(OpKind::Or, boolean, {5, 8}),
       rec(OpKind::Where, f32, {13, 12, 11})},
      {0.3}, {{f32, {32, 40}}, {bf16, {40}}, {boolean, {32, 1}}, {f32, {}}},
      {f32, {32, 40}});
  EXPECT_EQ(plan.width, 4);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[3], FusedVectorPlan::kUniform);
}

TEST(FusedJitOnHost, Float16MiddleAndStridedInputsMatchBitForBit) {
  // Both forms; in the vector one the middle input (div 8) is one load a
  // pack and the strided one steps along its rows of 8.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Mul, f16, {0, 1}), rec(OpKind::Sub, f16, {3, 2}),
       rec(OpKind::Relu, f16, {4}), rec(OpKind::Fill, f16, {}, 0),
       rec(OpKind::Max, f16, {5, 6}), rec(OpKind::Sqrt, f16, {7}),
       rec(OpKind::Cast, bf16, {8})},
      {0.1}, {{f16, {6, 10, 8}}, {f16, {1, 10, 1}}, {f16, {6, 1, 8}}},
      {bf16, {6, 10, 8}});
  EXPECT_EQ(plan.width, 8);
  EXPECT_EQ(plan.mode[0], FusedVectorPlan::kVector);
  EXPECT_EQ(plan.mode[1], FusedVectorPlan::kUniform);
  EXPECT_EQ(plan.mode[2], FusedVectorPlan::kStep);
}

TEST(FusedJitOnHost, TranscendentalsMatchWithinAnUlp) {
  // f32 only: the vector form takes 4 a thread.
  FusedVectorPlan plan = matchesTheCpu(
      {rec(OpKind::Exp, f32, {0}), rec(OpKind::Tanh, f32, {1}),
       rec(OpKind::Gelu, f32, {0}, 1), rec(OpKind::Add, f32, {2, 3}),
       rec(OpKind::Sigmoid, f32, {0}), rec(OpKind::Mul, f32, {4, 5})},
      {}, {{f32, {1000}}}, {f32, {1000}}, 1e-6);
  EXPECT_EQ(plan.width, 4);
}

} // namespace
