//===- CostModelTest.cpp - Device profiles and time estimates, without IR -===//

#include "colossal/Analysis/CostModel.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

/// Round numbers, so that every expectation below is arithmetic by hand.
const char *kProfile = R"({
  "name": "test device",
  "device_memory": "80GiB",
  "hbm_bytes_per_s": 1e12,
  "gemm_tflops": {
    "bf16": [{"min_dim": 0, "tflops": 10}, {"min_dim": 1024, "tflops": 100}],
    "f32": [{"min_dim": 0, "tflops": 50}]
  },
  "h2d_bytes_per_s": 50e9,
  "d2h_bytes_per_s": 50e9,
  "bidirectional_bytes_per_s": 80e9,
  "copy_latency_s": 1e-5,
  "cpu_adamw_params_per_s": 1e9
})";

DeviceProfile profile() {
  llvm::Expected<DeviceProfile> p = parseDeviceProfile(kProfile);
  EXPECT_TRUE(static_cast<bool>(p)) << llvm::toString(p.takeError());
  return *p;
}

/// The error text of a profile that must not parse.
std::string profileError(const std::string &json) {
  llvm::Expected<DeviceProfile> p = parseDeviceProfile(json);
  if (p)
    return "(parsed)";
  return llvm::toString(p.takeError());
}

rt::TensorType tt(rt::DType d, std::vector<int64_t> dims) {
  return rt::TensorType{d, std::move(dims)};
}

CostInstr kernel(rt::OpKind op, std::vector<rt::TensorType> ins,
                 std::vector<rt::TensorType> outs) {
  CostInstr c;
  c.op = op;
  c.attrs = rt::Attrs(op);
  c.inputs = std::move(ins);
  c.outputs = std::move(outs);
  return c;
}

CostInstr copy(uint64_t elems, Placement from, Placement to) {
  CostInstr c;
  c.kind = CostInstr::Kind::Copy;
  c.inputs = {tt(rt::DType::kF32, {static_cast<int64_t>(elems)})};
  c.placement = from;
  c.copyTo = to;
  return c;
}

constexpr rt::DType F32 = rt::DType::kF32, BF16 = rt::DType::kBF16,
                    I64 = rt::DType::kI64;

TEST(ParseByteSize, UnitsAndErrors) {
  EXPECT_EQ(parseByteSize("24GiB"), 24ull << 30);
  EXPECT_EQ(parseByteSize("1MiB"), 1ull << 20);
  EXPECT_EQ(parseByteSize("1.5KiB"), 1536u);
  EXPECT_EQ(parseByteSize("2k"), 2048u); // a bare prefix is binary
  EXPECT_EQ(parseByteSize("24GB"), 24000000000ull);
  EXPECT_EQ(parseByteSize("1e9"), 1000000000ull);
  EXPECT_EQ(parseByteSize("4096"), 4096u);
  EXPECT_EQ(parseByteSize("512B"), 512u);
  EXPECT_EQ(parseByteSize("139.8GiB"), 150109106995ull); // floor(139.8 x 2^30)
  for (const char *bad : {"", "GiB", "-1", "1XB", "1 GiB", "1GiBs", "abc",
                          "1e99", "1.2.3", "nan"})
    EXPECT_FALSE(parseByteSize(bad).has_value()) << bad;
}

TEST(DeviceProfile, ParsesAndFillsDefaults) {
  DeviceProfile p = profile();
  EXPECT_EQ(p.name, "test device");
  EXPECT_EQ(p.deviceMemoryBytes, 80ull << 30);
  EXPECT_EQ(p.hostMemoryBytes, 0u);       // not given
  EXPECT_DOUBLE_EQ(p.kernelFloorS, 3e-6); // the default floor
  EXPECT_DOUBLE_EQ(p.cpuBytesPerS, 28e9); // 28 B per AdamW parameter x 1e9/s
  // Classes are sorted by decreasing min_dim whatever the file's order.
  EXPECT_DOUBLE_EQ(p.gemmFlopsPerS(BF16, 4096), 100e12);
  EXPECT_DOUBLE_EQ(p.gemmFlopsPerS(BF16, 1024), 100e12);
  EXPECT_DOUBLE_EQ(p.gemmFlopsPerS(BF16, 1023), 10e12);
  // f16 has no entry: it falls back to f32's rate.
  EXPECT_DOUBLE_EQ(p.gemmFlopsPerS(rt::DType::kF16, 4096), 50e12);
}

TEST(DeviceProfile, TheShippedH200ProfileParses) {
  std::ifstream in(COLOSSAL_SOURCE_DIR "/devices/h200.json");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  llvm::Expected<DeviceProfile> p = parseDeviceProfile(text.str());
  ASSERT_TRUE(static_cast<bool>(p)) << llvm::toString(p.takeError());
  EXPECT_EQ(p->deviceMemoryBytes, 150109106995ull); // 139.8 GiB
  EXPECT_DOUBLE_EQ(p->gemmFlopsPerS(BF16, 2048), 700e12);
  EXPECT_DOUBLE_EQ(p->gemmFlopsPerS(BF16, 768), 300e12);
  EXPECT_DOUBLE_EQ(p->gemmFlopsPerS(F32, 2048), 50e12);
  EXPECT_DOUBLE_EQ(p->hbmBytesPerS, 4.2e12);
  EXPECT_DOUBLE_EQ(p->bidirectionalBytesPerS, 100e9);
  EXPECT_DOUBLE_EQ(p->cpuAdamwParamsPerS, 4.2e9);
}

TEST(DeviceProfile, ErrorsNameTheField) {
  std::string base = kProfile;
  auto with = [&](const std::string &from, const std::string &to) {
    std::string s = base;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  EXPECT_EQ(profileError(with("\"tflops\": 100", "\"tflops\": \"fast\"")),
            "field 'gemm_tflops.bf16[1].tflops': expected a positive number, "
            "got \"fast\"");
  EXPECT_EQ(profileError(with("\"hbm_bytes_per_s\": 1e12,", "")),
            "field 'hbm_bytes_per_s' is missing (a positive number)");
  EXPECT_EQ(
      profileError(with("\"copy_latency_s\": 1e-5", "\"copy_latency_s\": -1")),
      "field 'copy_latency_s': expected a positive number, got -1");
  EXPECT_EQ(profileError(with("\"80GiB\"", "\"lots\"")),
            "field 'device_memory': expected a positive size (bytes, or a "
            "string such as \"80GiB\"), got \"lots\"");
  EXPECT_EQ(profileError(with("\"hbm_bytes_per_s\"", "\"hbm_bytes_per_sec\"")),
            "field 'hbm_bytes_per_s' is missing (a positive number)");
  EXPECT_EQ(profileError(with("\"name\"", "\"nmae\"")), "unknown field 'nmae'");
  EXPECT_EQ(profileError(with("{\"min_dim\": 0, \"tflops\": 50}",
                              "{\"min_dim\": 8, \"tflops\": 50}")),
            "field 'gemm_tflops.f32': needs a class with \"min_dim\": 0 (the "
            "rate of the thinnest matmuls)");
  EXPECT_EQ(profileError(with("\"f32\"", "\"i64\"")),
            "field 'gemm_tflops.i64': not a floating-point element type (f32, "
            "bf16, f16, f64)");
  EXPECT_EQ(
      profileError(with("\"min_dim\": 1024,", "\"min_dim\": 1024, \"x\": 1,")),
      "unknown field 'gemm_tflops.bf16[1].x'");
  EXPECT_NE(profileError("{\"name\": ").find("not valid JSON"),
            std::string::npos);
}

TEST(CostModel, GemmBoundMatmul) {
  // bf16 [4,1024,2048] x [2048,1024] -> [4,1024,1024]:
  // flops = 2 x 4 x 1024 x 1024 x 2048 = 17179869184; min(M, N, K) = 1024
  // -> 100 TFLOP/s -> 171.8 us. Bytes (16 MiB + 4 MiB + 8 MiB = 29360128)
  // / 1e12 = 29.4 us: the GEMM rate sets the time.
  InstrCost c =
      estimateInstr(kernel(rt::OpKind::MatMul,
                           {tt(BF16, {4, 1024, 2048}), tt(BF16, {2048, 1024})},
                           {tt(BF16, {4, 1024, 1024})}),
                    profile());
  EXPECT_EQ(c.resource, Resource::Compute);
  EXPECT_TRUE(c.isGemm);
  EXPECT_DOUBLE_EQ(c.flops, 17179869184.0);
  EXPECT_EQ(c.bytes, 29360128u);
  EXPECT_DOUBLE_EQ(c.seconds, 17179869184.0 / 100e12);
}

TEST(CostModel, TransposedThinMatmulTakesTheFloor) {
  // f32, a [512, 64] with transpose_a (so M = 64, K = 512), b [512, 256]:
  // flops = 2 x 64 x 256 x 512 = 16777216 -> at 50 TFLOP/s 0.34 us; bytes
  // (32768 + 131072 + 16384) x 4 = 720896 -> 0.72 us; the floor is 3 us.
  CostInstr mm =
      kernel(rt::OpKind::MatMul, {tt(F32, {512, 64}), tt(F32, {512, 256})},
             {tt(F32, {64, 256})});
  mm.attrs.setI("transpose_a", 1);
  InstrCost c = estimateInstr(mm, profile());
  EXPECT_DOUBLE_EQ(c.flops, 16777216.0);
  EXPECT_EQ(c.bytes, 720896u);
  EXPECT_TRUE(c.atFloor);
  EXPECT_DOUBLE_EQ(c.seconds, 3e-6);
}

TEST(CostModel, MemoryBoundKernels) {
  DeviceProfile p = profile();
  // add of two f32 [1M] into one: 3 x 4 MiB = 12582912 B / 1e12 = 12.6 us.
  InstrCost add = estimateInstr(kernel(rt::OpKind::Add,
                                       {tt(F32, {1 << 20}), tt(F32, {1 << 20})},
                                       {tt(F32, {1 << 20})}),
                                p);
  EXPECT_FALSE(add.isGemm);
  EXPECT_EQ(add.bytes, 12582912u);
  EXPECT_DOUBLE_EQ(add.seconds, 12582912 / 1e12);
  // gather reads the rows it gathers, not the table: 2 x [8,128,1024] f32
  // (4 MiB each) + 8 x 128 i64 indices (8192) = 8396800 B -> 8.4 us.
  InstrCost gather = estimateInstr(
      kernel(rt::OpKind::Gather, {tt(F32, {50000, 1024}), tt(I64, {8, 128})},
             {tt(F32, {8, 128, 1024})}),
      p);
  EXPECT_EQ(gather.bytes, 8396800u);
  EXPECT_DOUBLE_EQ(gather.seconds, 8396800 / 1e12);
  // AdamW on the device: 4 f32 [1M] in (+ lr, step: 4 + 8 B), 3 out:
  // 7 x 4 MiB + 12 = 29360140 B.
  rt::TensorType w = tt(F32, {1 << 20});
  InstrCost adam =
      estimateInstr(kernel(rt::OpKind::AdamW,
                           {w, w, w, w, tt(F32, {}), tt(I64, {})}, {w, w, w}),
                    p);
  EXPECT_EQ(adam.resource, Resource::Compute);
  EXPECT_EQ(adam.bytes, 29360140u);
  // A tiny kernel takes the floor.
  InstrCost tiny =
      estimateInstr(kernel(rt::OpKind::Neg, {tt(F32, {4})}, {tt(F32, {4})}), p);
  EXPECT_DOUBLE_EQ(tiny.seconds, 3e-6);
}

TEST(CostModel, AttentionCountsItsProducts) {
  DeviceProfile p = profile();
  // bf16 q, k, v [2, 4, 256, 64]: forward flops 4 x 2 x 4 x 256 x 256 x 64
  // = 134217728 at the bf16 rate of min dim 64 (10 TFLOP/s): 13.4 us; its
  // bytes (3 x 256 KiB in, 256 KiB + 8 KiB of lse out) take ~1 us.
  rt::TensorType q = tt(BF16, {2, 4, 256, 64}), lse = tt(F32, {2, 4, 256});
  CostInstr fwd = kernel(rt::OpKind::Attention, {q, q, q}, {q, lse});
  InstrCost full = estimateInstr(fwd, p);
  EXPECT_TRUE(full.isGemm);
  EXPECT_DOUBLE_EQ(full.flops, 134217728.0);
  EXPECT_DOUBLE_EQ(full.seconds, 134217728.0 / 10e12);
  // Causal: the lower triangle with its diagonal, (S + 1) / 2S of it.
  fwd.attrs.setI("causal", 1);
  InstrCost causal = estimateInstr(fwd, p);
  EXPECT_DOUBLE_EQ(causal.flops, 134217728.0 * 0.5 * 257 / 256);
  // The backward: 2.5 times the forward's products.
  CostInstr bwd = kernel(rt::OpKind::AttentionGrad, {q, q, q, q, lse, q},
                         {q, q, q});
  bwd.attrs.setI("causal", 1);
  EXPECT_DOUBLE_EQ(estimateInstr(bwd, p).flops, 2.5 * causal.flops);
}

TEST(CostModel, KernelEfficiencyScalesTheRoofline) {
  std::string json = kProfile;
  json.replace(json.rfind('}'), 1,
               ", \"kernel_efficiency\": {\"add\": 0.25, \"matmul\": 1}}");
  llvm::Expected<DeviceProfile> p = parseDeviceProfile(json);
  ASSERT_TRUE(static_cast<bool>(p)) << llvm::toString(p.takeError());
  // add of two f32 [1M]: 12582912 B / 1e12 at a quarter of the roofline.
  InstrCost add = estimateInstr(kernel(rt::OpKind::Add,
                                       {tt(F32, {1 << 20}), tt(F32, {1 << 20})},
                                       {tt(F32, {1 << 20})}),
                                *p);
  EXPECT_DOUBLE_EQ(add.seconds, 4 * 12582912 / 1e12);
  // A kind without an entry keeps its roofline; the floor still applies
  // after the scaling (a 4-element add at 25%: still 3 us).
  InstrCost mul = estimateInstr(kernel(rt::OpKind::Mul,
                                       {tt(F32, {1 << 20}), tt(F32, {1 << 20})},
                                       {tt(F32, {1 << 20})}),
                                *p);
  EXPECT_DOUBLE_EQ(mul.seconds, 12582912 / 1e12);
  InstrCost tiny = estimateInstr(
      kernel(rt::OpKind::Add, {tt(F32, {4}), tt(F32, {4})}, {tt(F32, {4})}),
      *p);
  EXPECT_DOUBLE_EQ(tiny.seconds, 3e-6);

  auto error = [&](const std::string &entry) {
    std::string bad = kProfile;
    bad.replace(bad.rfind('}'), 1, ", \"kernel_efficiency\": " + entry + "}");
    return profileError(bad);
  };
  EXPECT_EQ(error("{\"add\": 1.5}"),
            "field 'kernel_efficiency.add': expected a fraction in (0, 1], got "
            "1.5");
  EXPECT_EQ(error("{\"add\": 0}"),
            "field 'kernel_efficiency.add': expected a fraction in (0, 1], got "
            "0");
  EXPECT_EQ(error("{\"addd\": 0.5}"),
            "field 'kernel_efficiency.addd': 'addd' is not an op of the plan "
            "format");
  EXPECT_EQ(error("[0.5]"),
            "field 'kernel_efficiency': expected an object of op name -> "
            "fraction of the roofline time in (0, 1], got [0.5]");
}

TEST(DeviceProfile, TheMeasuredH200ProfilesParse) {
  for (const char *name : {"h200-calibrated.json", "h200-fitted.json",
                           "h200-fitted-shared.json"}) {
    std::ifstream in(std::string(COLOSSAL_SOURCE_DIR "/devices/") + name);
    ASSERT_TRUE(in.good()) << name;
    std::stringstream text;
    text << in.rdbuf();
    llvm::Expected<DeviceProfile> p = parseDeviceProfile(text.str());
    ASSERT_TRUE(static_cast<bool>(p)) << name << ": "
                                      << llvm::toString(p.takeError());
    EXPECT_GT(p->gemmFlopsPerS(BF16, 2048), 500e12) << name;
  }
}

TEST(CostModel, HostKernelsRunOnTheCpu) {
  DeviceProfile p = profile();
  rt::TensorType w = tt(F32, {1000000});
  CostInstr adam = kernel(rt::OpKind::AdamW,
                          {w, w, w, w, tt(F32, {}), tt(I64, {})}, {w, w, w});
  adam.placement = Placement::Host;
  InstrCost c = estimateInstr(adam, p);
  EXPECT_EQ(c.resource, Resource::Cpu);
  EXPECT_DOUBLE_EQ(c.seconds, 1e6 / 1e9); // 1M params at 1 G params/s
  // Any other host kernel: bytes / (28 x 1e9 B/s); 3 x 4 MB = 12e6 B.
  CostInstr add = kernel(rt::OpKind::Add, {w, w}, {w});
  add.placement = Placement::Host;
  EXPECT_DOUBLE_EQ(estimateInstr(add, p).seconds, 12e6 / 28e9);
}

TEST(CostModel, Copies) {
  DeviceProfile p = profile();
  // 250M f32 = 1e9 B host to device: 1e9 / 50e9 + 10 us = 20.01 ms.
  InstrCost h2d =
      estimateInstr(copy(250000000, Placement::Host, Placement::Device), p);
  EXPECT_EQ(h2d.resource, Resource::H2D);
  EXPECT_EQ(h2d.bytes, 1000000000u);
  EXPECT_DOUBLE_EQ(h2d.seconds, 0.02 + 1e-5);
  InstrCost d2h =
      estimateInstr(copy(250000000, Placement::Device, Placement::Host), p);
  EXPECT_EQ(d2h.resource, Resource::D2H);
  // Device to device: read + write through HBM, 2e9 / 1e12 = 2 ms.
  InstrCost d2d =
      estimateInstr(copy(250000000, Placement::Device, Placement::Device), p);
  EXPECT_EQ(d2d.resource, Resource::Compute);
  EXPECT_DOUBLE_EQ(d2d.seconds, 2e-3);
  CostInstr event;
  event.kind = CostInstr::Kind::Event;
  EXPECT_EQ(estimateInstr(event, p).seconds, 0);
}

TEST(CostModel, StepIsTheSlowestResource) {
  DeviceProfile p = profile();
  // Compute: the 171.8 us matmul run twice (a micro_step with grad-accum 2).
  CostInstr mm = kernel(rt::OpKind::MatMul,
                        {tt(BF16, {4, 1024, 2048}), tt(BF16, {2048, 1024})},
                        {tt(BF16, {4, 1024, 1024})});
  mm.repeat = 2;
  StepCost s = estimateStep({mm}, p);
  EXPECT_DOUBLE_EQ(s.gemmS, 2 * 17179869184.0 / 100e12);
  EXPECT_DOUBLE_EQ(s.computeS, s.gemmS);
  EXPECT_DOUBLE_EQ(s.flops, 2 * 17179869184.0);
  EXPECT_EQ(s.bottleneck, "compute");
  EXPECT_DOUBLE_EQ(s.stepS, s.computeS);

  // Add 1e9 B each way, on their own copy streams (no events: they overlap
  // the compute): each direction alone is 20.01 ms, but both at once share
  // 80 GB/s: 2e9 / 80e9 + 2 x 10 us = 25.02 ms, which sets the link.
  CostInstr up = copy(250000000, Placement::Host, Placement::Device);
  CostInstr down = copy(250000000, Placement::Device, Placement::Host);
  up.stream = 1;
  down.stream = 2;
  s = estimateStep({mm, up, down}, p);
  EXPECT_EQ(s.h2dBytes, 1000000000u);
  EXPECT_EQ(s.d2hBytes, 1000000000u);
  EXPECT_DOUBLE_EQ(s.h2dS, 0.02001);
  EXPECT_DOUBLE_EQ(s.pcieS, 0.025 + 2e-5);
  EXPECT_EQ(s.bottleneck, "pcie");
  EXPECT_DOUBLE_EQ(s.stepS, s.pcieS);

  // A host AdamW over 100M params: 0.1 s, slower than both.
  rt::TensorType w = tt(F32, {100000000});
  CostInstr adam = kernel(rt::OpKind::AdamW,
                          {w, w, w, w, tt(F32, {}), tt(I64, {})}, {w, w, w});
  adam.placement = Placement::Host;
  // On the host stream 3 of the same program, it overlaps the matmul.
  adam.stream = 3;
  CostInstr once = mm;
  once.repeat = 1;
  s = estimateStep({once, adam}, p);
  EXPECT_DOUBLE_EQ(s.cpuS, 0.1);
  EXPECT_EQ(s.bottleneck, "cpu_optimizer");
  EXPECT_DOUBLE_EQ(s.stepS, 0.1);
  EXPECT_EQ(s.instrs.size(), 2u);

  // After a micro_step run twice (another repeat: another program, run
  // before it), or on stream 0 in plan order, it cannot overlap: the list
  // schedule adds the two (the bottleneck is still the busiest resource).
  s = estimateStep({mm, adam}, p);
  EXPECT_EQ(s.bottleneck, "cpu_optimizer");
  EXPECT_DOUBLE_EQ(s.stepS, s.computeS + 0.1);
  adam.stream = 0;
  s = estimateStep({once, adam}, p);
  EXPECT_DOUBLE_EQ(s.stepS, s.computeS + 0.1);
}

TEST(CostModel, HostMemorySharedWithCopies) {
  // host_memory_bytes_per_s: host kernels timed by their bytes, stretched
  // by the copies' DMA bytes. A host AdamW over 1M params moves 28e6 B
  // (p, g, m, v in; p, m, v out; plus the two scalars: 12 B); alone at
  // 28e9 B/s, 1.0000004 ms. With 14e6 B copied down (D/H = 1/2): 1.5x.
  DeviceProfile p = profile();
  p.hostMemoryBytesPerS = 28e9;
  rt::TensorType w = tt(F32, {1000000});
  CostInstr adam = kernel(rt::OpKind::AdamW,
                          {w, w, w, w, tt(F32, {}), tt(I64, {})}, {w, w, w});
  adam.placement = Placement::Host;
  adam.stream = 3;
  const double hostBytes = 28e6 + 12;
  StepCost alone = estimateStep({adam}, p);
  EXPECT_DOUBLE_EQ(alone.cpuS, hostBytes / 28e9);
  CostInstr down = copy(3500000, Placement::Device, Placement::Host);
  down.stream = 2;
  StepCost shared = estimateStep({down, adam}, p);
  EXPECT_DOUBLE_EQ(shared.cpuS, hostBytes * (1.0 + 14e6 / hostBytes) / 28e9);
  EXPECT_EQ(shared.bottleneck, "cpu_optimizer");
  // Not modelled (0, the default): the rate alone, whatever the copies.
  p.hostMemoryBytesPerS = 0;
  EXPECT_DOUBLE_EQ(estimateStep({down, adam}, p).cpuS, 1e6 / 1e9);
}

TEST(DeviceProfile, HostMemoryBandwidthMustNotBeNegative) {
  std::string text = R"({"device_memory": "80GiB", "hbm_bytes_per_s": 1e12,
    "h2d_bytes_per_s": 5e10, "d2h_bytes_per_s": 5e10, "copy_latency_s": 1e-5,
    "cpu_adamw_params_per_s": 1e9, "host_memory_bytes_per_s": -1,
    "gemm_tflops": {"f32": [{"min_dim": 0, "tflops": 10}]}})";
  llvm::Expected<DeviceProfile> parsed = parseDeviceProfile(text);
  ASSERT_FALSE(static_cast<bool>(parsed));
  EXPECT_NE(llvm::toString(parsed.takeError()).find("host_memory_bytes_per_s"),
            std::string::npos);
}

} // namespace
