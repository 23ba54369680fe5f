//===- Attention.cpp - CPU reference kernels of fused attention -----------===//
//
// attention and attention_grad as OpTable.h defines them, computed like the
// other reference kernels: inputs widened to double, every score, softmax
// and sum in double in a fixed order, one rounding per stored element.
//
// Cost: O(B Hq S T D) time, O(T) scratch per query row in the forward and
// O(T D) per (batch, kv head) in the backward; no [S, T] matrix is kept. The
// work is split over (batch, head) pairs on several threads; each pair is
// computed by the same code whatever the thread count, so results do not
// depend on it. The backward goes by kv head so that the query heads of a
// group, which all add into one dk and dv, run on one thread in order.
//
//===----------------------------------------------------------------------===//
#include "Attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <thread>

namespace colossal::runtime {

namespace {

void store(const TensorRef &ref, int64_t index, double value) {
  if (ref.type.dtype == DType::kF32)
    static_cast<float *>(ref.data)[index] = static_cast<float>(value);
  else
    storeFromDouble(ref, index, value);
}

/// Runs body(task) for task in [0, count) on up to hardware_concurrency
/// threads (COLOSSAL_CPU_THREADS overrides), in contiguous chunks; one
/// thread when the whole call is under ~2^20 multiply-adds (`workPerTask`
/// each), where starting threads would cost more than it saves.
template <typename Body>
void forEachTask(int64_t count, double workPerTask, const Body &body) {
  constexpr double kMinWorkPerThread = 1 << 20;
  int64_t threads = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("COLOSSAL_CPU_THREADS"))
    threads = std::max<int64_t>(1, std::atoll(env));
  // In double: S T D can pass int64 where each tensor is still valid.
  int64_t byWork =
      workPerTask >= kMinWorkPerThread
          ? count
          : static_cast<int64_t>(count * workPerTask / kMinWorkPerThread);
  threads = std::max<int64_t>(1, std::min({threads, count, byWork}));
  int64_t chunk = (count + threads - 1) / std::max<int64_t>(threads, 1);
  auto run = [&body, count, chunk](int64_t t) {
    for (int64_t task = t * chunk; task < std::min(count, (t + 1) * chunk);
         ++task)
      body(task);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t)
    pool.emplace_back(run, t);
  run(0);
  for (std::thread &th : pool)
    th.join();
}

/// The shapes and the bias's broadcast strides of one call.
struct Geometry {
  int64_t batch, heads, kvHeads, rows, cols, depth; // B Hq Hkv S T D
  double scale;
  bool causal;
  const std::vector<double> *bias = nullptr;
  std::array<int64_t, 4> biasStrides{}; // over [B, Hq, S, T]; 0 broadcasts

  Geometry(const Attrs &attrs, const std::vector<TensorRef> &inputs,
           const std::vector<double> *biasValues) {
    const std::vector<int64_t> &q = inputs[0].type.dims,
                               &k = inputs[1].type.dims;
    batch = q[0], heads = q[1], rows = q[2], depth = q[3];
    kvHeads = k[1], cols = k[2];
    scale = attrs.f("scale");
    causal = attrs.i("causal") != 0;
    bias = biasValues;
    if (!bias)
      return;
    // Right-aligned broadcast of the bias's dims (validated to be 1 or the
    // full dim) against [B, Hq, S, T].
    const std::vector<int64_t> &dims = inputs[3].type.dims;
    int64_t stride = 1;
    for (size_t d = dims.size(); d-- > 0;) {
      biasStrides[4 - dims.size() + d] = dims[d] == 1 ? 0 : stride;
      stride *= dims[d];
    }
  }

  /// The scores of query row i of (b, h) into `scores`; returns the max.
  double scoreRow(const std::vector<double> &q, const std::vector<double> &k,
                  int64_t b, int64_t h, int64_t i,
                  std::vector<double> &scores) const {
    int64_t kvHead = h / (heads / kvHeads);
    const double *qRow = q.data() + ((b * heads + h) * rows + i) * depth;
    const double *kBase = k.data() + (b * kvHeads + kvHead) * cols * depth;
    double maxScore = -INFINITY;
    // Bottom-right causal alignment: row i sees keys j <= i + cols - rows.
    int64_t lastKey = causal ? i + cols - rows : cols - 1;
    for (int64_t j = 0; j < cols; ++j) {
      if (j > lastKey) {
        scores[j] = -INFINITY;
        continue;
      }
      const double *kRow = kBase + j * depth;
      double dot = 0.0;
      for (int64_t d = 0; d < depth; ++d)
        dot += qRow[d] * kRow[d];
      double s = scale * dot;
      if (bias)
        s += (*bias)[b * biasStrides[0] + h * biasStrides[1] +
                     i * biasStrides[2] + j * biasStrides[3]];
      scores[j] = s;
      maxScore = std::max(maxScore, s);
    }
    return maxScore;
  }

  /// Turns `scores` into probabilities in place; returns lse, -inf (and
  /// all-zero probabilities) for a row with no finite score.
  static double softmaxRow(std::vector<double> &scores, double maxScore) {
    if (maxScore == -INFINITY) {
      std::fill(scores.begin(), scores.end(), 0.0);
      return -INFINITY;
    }
    double sum = 0.0;
    for (double &s : scores) {
      s = std::exp(s - maxScore);
      sum += s;
    }
    for (double &s : scores)
      s /= sum;
    return maxScore + std::log(sum);
  }
};

} // namespace

Status runAttentionCpu(const Attrs &attrs, const std::vector<TensorRef> &inputs,
                       const std::vector<TensorRef> &outputs) {
  std::vector<double> q = loadAllAsDouble(inputs[0]), k = loadAllAsDouble(inputs[1]),
                      v = loadAllAsDouble(inputs[2]);
  std::vector<double> bias;
  if (inputs.size() == 4)
    bias = loadAllAsDouble(inputs[3]);
  Geometry g(attrs, inputs, inputs.size() == 4 ? &bias : nullptr);
  const TensorRef &out = outputs[0], &lse = outputs[1];
  float *lseData = static_cast<float *>(lse.data);
  forEachTask(
      g.batch * g.heads, double(g.rows) * g.cols * g.depth, [&](int64_t task) {
        int64_t b = task / g.heads, h = task % g.heads;
        int64_t kvHead = h / (g.heads / g.kvHeads);
        const double *vBase =
            v.data() + (b * g.kvHeads + kvHead) * g.cols * g.depth;
        std::vector<double> p(static_cast<size_t>(g.cols));
        std::vector<double> acc(static_cast<size_t>(g.depth));
        for (int64_t i = 0; i < g.rows; ++i) {
          double rowLse = Geometry::softmaxRow(p, g.scoreRow(q, k, b, h, i, p));
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = 0; j < g.cols; ++j) {
            if (p[j] == 0.0)
              continue;
            const double *vRow = vBase + j * g.depth;
            for (int64_t d = 0; d < g.depth; ++d)
              acc[d] += p[j] * vRow[d];
          }
          int64_t row = task * g.rows + i;
          for (int64_t d = 0; d < g.depth; ++d)
            store(out, row * g.depth + d, acc[d]);
          lseData[row] = static_cast<float>(rowLse);
        }
      });
  return Status::ok();
}

Status runAttentionGradCpu(const Attrs &attrs,
                           const std::vector<TensorRef> &inputs,
                           const std::vector<TensorRef> &outputs) {
  bool hasBias = inputs.size() == 7;
  std::vector<double> q = loadAllAsDouble(inputs[0]), k = loadAllAsDouble(inputs[1]),
                      v = loadAllAsDouble(inputs[2]);
  std::vector<double> bias;
  if (hasBias)
    bias = loadAllAsDouble(inputs[3]);
  std::vector<double> dout = loadAllAsDouble(inputs[hasBias ? 6 : 5]);
  Geometry g(attrs, inputs, hasBias ? &bias : nullptr);
  const TensorRef &dqRef = outputs[0], &dkRef = outputs[1], &dvRef = outputs[2];
  int64_t group = g.heads / g.kvHeads;
  forEachTask(
      g.batch * g.kvHeads, double(group) * g.rows * g.cols * g.depth,
      [&](int64_t task) {
        int64_t b = task / g.kvHeads, kvHead = task % g.kvHeads;
        const double *kBase = k.data() + task * g.cols * g.depth;
        const double *vBase = v.data() + task * g.cols * g.depth;
        std::vector<double> dk(static_cast<size_t>(g.cols * g.depth), 0.0);
        std::vector<double> dv(static_cast<size_t>(g.cols * g.depth), 0.0);
        std::vector<double> p(static_cast<size_t>(g.cols));
        std::vector<double> dp(static_cast<size_t>(g.cols));
        std::vector<double> dq(static_cast<size_t>(g.depth));
        for (int64_t h = kvHead * group; h < (kvHead + 1) * group; ++h) {
          for (int64_t i = 0; i < g.rows; ++i) {
            // Recompute this row's probabilities exactly, rather than from the
            // f32 lse, so that the reference gradient has no stored rounding.
            Geometry::softmaxRow(p, g.scoreRow(q, k, b, h, i, p));
            int64_t row = (b * g.heads + h) * g.rows + i;
            const double *qRow = q.data() + row * g.depth;
            const double *doRow = dout.data() + row * g.depth;
            // dp_j = dout_i . v_j; rowDot = sum_j p_j dp_j (= dout_i . out_i).
            double rowDot = 0.0;
            for (int64_t j = 0; j < g.cols; ++j) {
              double dot = 0.0;
              if (p[j] != 0.0) {
                const double *vRow = vBase + j * g.depth;
                for (int64_t d = 0; d < g.depth; ++d)
                  dot += doRow[d] * vRow[d];
              }
              dp[j] = dot;
              rowDot += p[j] * dot;
            }
            std::fill(dq.begin(), dq.end(), 0.0);
            for (int64_t j = 0; j < g.cols; ++j) {
              if (p[j] == 0.0)
                continue;
              // d score_ij = p_ij (dp_ij - rowDot); the score is scale * q.k.
              double ds = p[j] * (dp[j] - rowDot) * g.scale;
              const double *kRow = kBase + j * g.depth;
              double *dkRow = dk.data() + j * g.depth;
              double *dvRow = dv.data() + j * g.depth;
              for (int64_t d = 0; d < g.depth; ++d) {
                dq[d] += ds * kRow[d];
                dkRow[d] += ds * qRow[d];
                dvRow[d] += p[j] * doRow[d];
              }
            }
            for (int64_t d = 0; d < g.depth; ++d)
              store(dqRef, row * g.depth + d, dq[d]);
          }
        }
        int64_t base = task * g.cols * g.depth;
        for (int64_t e = 0; e < g.cols * g.depth; ++e) {
          store(dkRef, base + e, dk[e]);
          store(dvRef, base + e, dv[e]);
        }
      });
  return Status::ok();
}

} // namespace colossal::runtime
