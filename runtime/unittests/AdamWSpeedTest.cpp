//===- AdamWSpeedTest.cpp - Throughput of the CPU AdamW, fast vs exact ----===//
//
// The host-stream AdamW bounds offloaded training (--policy cpu runs every
// trained weight's update on the CPU), so its speed is worth a number. This
// test times one in-place AdamW step over a large f32 weight with the f64
// kernel (COLOSSAL_CPU_ADAMW=exact) and the f32 one (the default), on 1 and
// 2 threads (COLOSSAL_CPU_THREADS), and prints G params/s and the memory
// traffic that implies (28 bytes per parameter: read p, g, m, v; write p, m,
// v). It checks that the two kernels agree and that neither the mode nor the
// thread count changes the f32 kernel's bytes; it asserts no speed, which
// depends on the machine.
//
//   COLOSSAL_ADAMW_BENCH_PARAMS   parameters (default 4194304, 4M: a few
//                                 seconds under ctest); docs/colossal-run.md
//                                 records a run with 100000000
//   COLOSSAL_ADAMW_BENCH_REPEATS  timed steps per case, best kept (default 3)
//   COLOSSAL_ADAMW_BENCH_THREADS  a third thread count to time the fast
//                                 kernel on (e.g. 16, the H200 host's cores;
//                                 default none)
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace colossal::runtime;

namespace {

int64_t envOr(const char *name, int64_t fallback) {
  const char *value = std::getenv(name);
  return value && *value ? std::max<int64_t>(1, std::atoll(value)) : fallback;
}

/// p, g, m, v of n elements, filled with a cheap deterministic pattern in
/// the ranges training sees (|g| ~ 1e-2, v ~ g^2).
struct AdamWState {
  HostTensor p, g, m, v, lr, step;
  explicit AdamWState(int64_t n)
      : p(TensorType{DType::kF32, {n}}), g(p.type), m(p.type), v(p.type),
        lr(TensorType{DType::kF32, {}}), step(TensorType{DType::kI64, {}}) {
    for (int64_t i = 0; i < n; ++i) {
      p.as<float>()[i] = std::sin(0.001f * static_cast<float>(i % 100003));
      g.as<float>()[i] = 1e-2f * std::cos(0.003f * static_cast<float>(i % 7919));
      m.as<float>()[i] = 1e-3f * static_cast<float>(i % 17) - 8e-3f;
      v.as<float>()[i] = 1e-5f * static_cast<float>(i % 5 + 1);
    }
    lr.as<float>()[0] = 1e-3f;
    step.as<int64_t>()[0] = 9;
  }
};

Attrs adamw() {
  Attrs a(OpKind::AdamW);
  a.setF("beta1", 0.9);
  a.setF("beta2", 0.999);
  a.setF("eps", 1e-8);
  a.setF("weight_decay", 0.01);
  return a;
}

/// Runs `repeats` in-place steps on a fresh copy of `initial` (the first
/// one's result is kept in `result`) and returns the best time in seconds.
double timeSteps(const AdamWState &initial, const char *mode,
                 const char *threads, int64_t repeats, HostTensor &result) {
  setenv("COLOSSAL_CPU_ADAMW", mode, 1);
  setenv("COLOSSAL_CPU_THREADS", threads, 1);
  double best = INFINITY;
  for (int64_t r = 0; r < repeats; ++r) {
    AdamWState s = initial;
    std::vector<TensorRef> in = {s.p.ref(), s.g.ref(), s.m.ref(),
                                 s.v.ref(), s.lr.ref(), s.step.ref()};
    std::vector<TensorRef> out = {s.p.ref(), s.m.ref(), s.v.ref()};
    auto start = std::chrono::steady_clock::now();
    Status status = runCpuKernel(adamw(), in, out);
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - start)
                         .count();
    EXPECT_TRUE(status.isOk()) << status.toString();
    best = std::min(best, seconds);
    if (r == 0)
      result = std::move(s.p);
  }
  unsetenv("COLOSSAL_CPU_ADAMW");
  unsetenv("COLOSSAL_CPU_THREADS");
  return best;
}

TEST(AdamWSpeed, FastAndExactOnOneAndTwoThreads) {
  int64_t n = envOr("COLOSSAL_ADAMW_BENCH_PARAMS", int64_t(1) << 22);
  int64_t repeats = envOr("COLOSSAL_ADAMW_BENCH_REPEATS", 3);
  AdamWState initial(n);
  HostTensor params[2][2];
  const char *modes[2] = {"exact", "fast"}, *threads[2] = {"1", "2"};
  for (int mode = 0; mode < 2; ++mode)
    for (int t = 0; t < 2; ++t) {
      double seconds =
          timeSteps(initial, modes[mode], threads[t], repeats, params[mode][t]);
      double rate = static_cast<double>(n) / seconds;
      std::printf("adamw %-5s threads %s: %lld params in %.1f ms: %.3f G "
                  "params/s, %.1f GB/s\n",
                  modes[mode], threads[t], static_cast<long long>(n),
                  seconds * 1e3, rate * 1e-9, rate * 28e-9);
    }
  // Every element is computed by the same code whatever the split.
  EXPECT_EQ(params[0][0].bytes, params[0][1].bytes) << "exact, 1 vs 2 threads";
  EXPECT_EQ(params[1][0].bytes, params[1][1].bytes) << "fast, 1 vs 2 threads";
  // One step: the f32 parameter is within 2e-6 relative (plus 1e-7 absolute
  // for values near 0) of the f64 kernel's.
  const float *exact = params[0][0].as<float>(), *fast = params[1][0].as<float>();
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double diff = std::fabs(double(fast[i]) - double(exact[i]));
    worst = std::max(worst, diff);
    ASSERT_LE(diff, 2e-6 * std::fabs(exact[i]) + 1e-7) << "element " << i;
  }
  std::printf("adamw fast vs exact: worst |param difference| %.3g\n", worst);
  if (const char *more = std::getenv("COLOSSAL_ADAMW_BENCH_THREADS")) {
    HostTensor wide;
    double seconds = timeSteps(initial, "fast", more, repeats, wide);
    double rate = static_cast<double>(n) / seconds;
    std::printf("adamw fast  threads %s: %lld params in %.1f ms: %.3f G "
                "params/s, %.1f GB/s\n",
                more, static_cast<long long>(n), seconds * 1e3, rate * 1e-9,
                rate * 28e-9);
    EXPECT_EQ(params[1][0].bytes, wide.bytes) << "fast, 1 vs " << more;
  }
}

} // namespace
