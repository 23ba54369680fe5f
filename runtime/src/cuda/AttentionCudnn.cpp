//===- AttentionCudnn.cpp - attention through cuDNN 9's fused SDPA -------===//
//
// See AttentionCudnn.h. Three parts:
//  1. the support predicate and the graph as plain data (no cuDNN needed:
//     built and unit-tested everywhere the CUDA backend builds);
//  2. the cuDNN entry points, opened with dlopen (libcudnn.so.9, else the
//     library CMake found), and the lowering of the plain graph to backend
//     descriptors;
//  3. CudnnAttention: per shape, an operation graph, engine heuristics
//     (mode A, then the fallback list), the first engine config whose
//     execution plan finalizes, and its workspace size; a call binds the
//     tensors in a variant pack and executes on the backend's stream.
//
// NOT YET RUN ON A GPU: parts 1 and the descriptor lowering of part 2 are
// unit-tested without one; everything that needs a handle (operation
// graph finalize, heuristics, plans, execution) was written from the
// backend API's documentation and cudnn-frontend's graph patterns and has
// not been executed yet.
//
//===----------------------------------------------------------------------===//
#include "AttentionCudnn.h"

#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>
#include <tuple>
#include <type_traits>

#ifdef COLOSSAL_HAVE_CUDNN
#include <cudnn_graph.h>
#include <dlfcn.h>
#endif

namespace colossal::runtime::cuda {

namespace {

std::atomic<uint64_t> callsRun{0};

const char *sdpaDtypeName(DType t) {
  switch (t) {
  case DType::kBF16:
    return "bf16";
  case DType::kF16:
    return "f16";
  case DType::kF32:
    return "f32";
  case DType::kF64:
    return "f64";
  default:
    return "non-float";
  }
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

} // namespace

//===----------------------------------------------------------------------===//
// Shapes and the support predicate
//===----------------------------------------------------------------------===//

CudnnSdpaShape CudnnSdpaShape::of(const AttentionCall &call, bool backward) {
  CudnnSdpaShape s;
  s.dtype = call.dtype;
  s.batch = call.batch, s.heads = call.heads, s.kvHeads = call.kvHeads;
  s.rows = call.rows, s.cols = call.cols, s.depth = call.depth;
  s.causal = call.causal;
  s.hasBias = call.bias != nullptr;
  s.backward = backward;
  return s;
}

bool CudnnSdpaShape::operator<(const CudnnSdpaShape &o) const {
  auto key = [](const CudnnSdpaShape &s) {
    return std::make_tuple(static_cast<int>(s.dtype), s.batch, s.heads,
                           s.kvHeads, s.rows, s.cols, s.depth, s.causal,
                           s.hasBias, s.backward);
  };
  return key(*this) < key(o);
}

std::string CudnnSdpaShape::toString() const {
  std::ostringstream os;
  os << (backward ? "attention_grad " : "attention ") << sdpaDtypeName(dtype)
     << " B" << batch << " H" << heads << "/" << kvHeads << " S" << rows << " T"
     << cols << " D" << depth << (causal ? " causal" : "")
     << (hasBias ? " bias" : "");
  return os.str();
}

std::string cudnnSdpaUnsupportedReason(const CudnnSdpaShape &s,
                                       int64_t version) {
  if (s.dtype != DType::kBF16 && s.dtype != DType::kF16)
    return std::string("cuDNN's fused attention takes bf16 and f16, not ") +
           sdpaDtypeName(s.dtype);
  if (s.hasBias)
    return "an additive bias is not wired to cuDNN here";
  if (s.depth < 8 || s.depth > 128 || s.depth % 8 != 0)
    return "head dim " + std::to_string(s.depth) +
           " (cuDNN's path here takes multiples of 8 up to 128)";
  if (s.batch < 1 || s.heads < 1 || s.kvHeads < 1 || s.rows < 1 || s.cols < 1)
    return "an empty dimension";
  if (s.heads % s.kvHeads != 0)
    return "heads not a multiple of kv heads";
  if (s.causal && s.rows > s.cols)
    return "causal with more query rows than keys (S " +
           std::to_string(s.rows) + " > T " + std::to_string(s.cols) +
           "): cuDNN's bottom-right mask needs S <= T";
  const int64_t lim = int64_t(1) << 31;
  if (s.batch * s.heads * s.rows * s.depth >= lim ||
      s.batch * s.kvHeads * s.cols * s.depth >= lim)
    return "a tensor of 2^31 elements or more";
  if (version != 0) {
    if (version < 90000 || version >= 100000)
      return "cuDNN " + std::to_string(version) +
             " loaded; this path is written for cuDNN 9";
    if (s.causal && s.rows != s.cols && version < 90600 &&
        (s.rows % 64 != 0 || s.cols % 64 != 0))
      return "cuDNN before 9.6 takes a bottom-right causal mask only for "
             "S and T multiples of 64";
  }
  return "";
}

//===----------------------------------------------------------------------===//
// The graph as plain data
//===----------------------------------------------------------------------===//

const SdpaTensor *SdpaGraph::find(int64_t uid) const {
  for (const SdpaTensor &t : tensors)
    if (t.uid == uid)
      return &t;
  return nullptr;
}

SdpaGraph::Layout SdpaGraph::layout(size_t planBytes) const {
  Layout l;
  l.planBytes = planBytes;
  size_t at = align256(planBytes);
  l.totalBytes = planBytes;
  auto bytes = [](const SdpaTensor &t) {
    size_t n = 4; // both are f32
    for (int64_t d : t.dims)
      n *= static_cast<size_t>(d);
    return n;
  };
  if (const SdpaTensor *sum = find(kUidSoftmaxSum)) {
    l.softmaxSumOffset = at;
    at = align256(at + bytes(*sum));
    l.totalBytes = at;
  }
  if (const SdpaTensor *acc = find(kUidDQAccum)) {
    l.dqAccumOffset = at;
    at = align256(at + bytes(*acc));
    l.totalBytes = at;
  }
  return l;
}

namespace {

using Dims4 = std::array<int64_t, 4>;

Dims4 contiguous(const Dims4 &d) {
  return {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
}

/// Builds an SdpaGraph op by op; virtual tensors get fresh uids.
class GraphBuilder {
public:
  SdpaGraph g;
  int64_t next = kFirstVirtual;

  int64_t tensor(int64_t uid, SdpaType type, Dims4 dims, Dims4 strides,
                 const std::string &name, bool isVirtual = false,
                 bool byValue = false) {
    SdpaTensor t;
    t.uid = uid;
    t.type = type;
    t.dims = dims;
    t.strides = strides;
    t.isVirtual = isVirtual;
    t.byValue = byValue;
    t.name = name;
    g.tensors.push_back(t);
    return uid;
  }
  int64_t scalar(int64_t uid, SdpaType type, const std::string &name) {
    return tensor(uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, name, false, true);
  }
  int64_t virt(SdpaType type, Dims4 dims, const std::string &name) {
    return tensor(next++, type, dims, contiguous(dims), name, true);
  }
  int64_t virt(SdpaType type, Dims4 dims, Dims4 strides,
               const std::string &name) {
    return tensor(next++, type, dims, strides, name, true);
  }
  const SdpaTensor &at(int64_t uid) const { return *g.find(uid); }

  void op(SdpaOp o) { g.ops.push_back(std::move(o)); }

  /// y = a b (batched; GQA's heads broadcast by the dims).
  int64_t matmul(int64_t a, int64_t b, int64_t y, const std::string &name) {
    SdpaOp o;
    o.kind = SdpaOpKind::kMatmul;
    o.in = {a, b};
    o.out = y;
    o.name = name;
    op(o);
    return y;
  }
  int64_t pointwise(SdpaPw mode, std::vector<int64_t> in, int64_t y,
                    const std::string &name, SdpaType compute = SdpaType::kF32,
                    int64_t axis = -1) {
    SdpaOp o;
    o.kind = SdpaOpKind::kPointwise;
    o.pw = mode;
    o.in = std::move(in);
    o.out = y;
    o.compute = compute;
    o.axis = axis;
    o.name = name;
    op(o);
    return y;
  }
  /// f32 y of x's dims and strides.
  int64_t pointwiseLike(SdpaPw mode, std::vector<int64_t> in,
                        const std::string &name) {
    const SdpaTensor &x = at(in[0]);
    int64_t y = virt(SdpaType::kF32, x.dims, x.strides, name);
    return pointwise(mode, std::move(in), y, name);
  }
  int64_t reduce(SdpaReduce mode, int64_t x, int64_t y,
                 const std::string &name) {
    SdpaOp o;
    o.kind = SdpaOpKind::kReduction;
    o.reduce = mode;
    o.in = {x};
    o.out = y;
    o.name = name;
    op(o);
    return y;
  }
  int64_t reshape(int64_t x, int64_t y, const std::string &name) {
    SdpaOp o;
    o.kind = SdpaOpKind::kReshape;
    o.in = {x};
    o.out = y;
    o.name = name;
    op(o);
    return y;
  }

  /// The causal mask on scores `x` [B, H, S, T] (f32): keeps key j for
  /// row i when (i + T) - S >= j, else -inf. For S = T the shift is left
  /// out (cuDNN's top-left causal, the same mask).
  int64_t causalMask(int64_t x, int64_t rows, int64_t cols) {
    const SdpaTensor &xs = at(x);
    Dims4 d = xs.dims, st = xs.strides;
    int64_t row = virt(SdpaType::kI32, d, st, "row_index");
    pointwise(SdpaPw::kGenIndex, {x}, row, "gen_row_index", SdpaType::kF32, 2);
    if (rows != cols) {
      int64_t seqKv = scalar(kUidSeqKv, SdpaType::kI32, "seq_kv");
      int64_t seqQ = scalar(kUidSeqQ, SdpaType::kI32, "seq_q");
      int64_t plusT = virt(SdpaType::kI32, d, st, "row+skv");
      pointwise(SdpaPw::kAdd, {row, seqKv}, plusT, "row+skv", SdpaType::kI32);
      int64_t minusS = virt(SdpaType::kI32, d, st, "row+skv-sq");
      pointwise(SdpaPw::kSub, {plusT, seqQ}, minusS, "row+skv-sq",
                SdpaType::kI32);
      row = minusS;
    }
    int64_t col = virt(SdpaType::kI32, d, st, "col_index");
    pointwise(SdpaPw::kGenIndex, {x}, col, "gen_col_index", SdpaType::kF32, 3);
    int64_t keep = virt(SdpaType::kBool, d, st, "row>=col");
    pointwise(SdpaPw::kCmpGe, {row, col}, keep, "row>=col", SdpaType::kBool);
    int64_t negInf = scalar(kUidNegInf, SdpaType::kF32, "neg_inf");
    int64_t y = virt(SdpaType::kF32, d, st, "masked");
    // BINARY_SELECT: y = t ? x : b.
    pointwise(SdpaPw::kBinarySelect, {x, negInf, keep}, y, "causal_select");
    return y;
  }
};

} // namespace

SdpaGraph buildSdpaGraph(const CudnnSdpaShape &s) {
  GraphBuilder gb;
  const int64_t B = s.batch, H = s.heads, Hk = s.kvHeads, S = s.rows,
                T = s.cols, D = s.depth;
  const SdpaType io = s.dtype == DType::kF16 ? SdpaType::kF16 : SdpaType::kBF16;
  // The backend's matmuls take Q [B, H, S, D] times K^T [B, Hk, D, T]:
  // K's buffer read through transposed strides.
  const Dims4 qDims{B, H, S, D}, kvDims{B, Hk, T, D}, kvT{B, Hk, D, T};
  const Dims4 kvTStrides{Hk * T * D, T * D, 1, D};
  const Dims4 scores{B, H, S, T}, rowDims{B, H, S, 1};
  const Dims4 rowStrides{H * S, S, 1, 1};
  int64_t q = gb.tensor(kUidQ, io, qDims, contiguous(qDims), "Q");
  int64_t kt = gb.tensor(kUidK, io, kvT, kvTStrides, "K^T");
  int64_t scale = gb.scalar(kUidScale, SdpaType::kF32, "attn_scale");

  if (!s.backward) {
    int64_t v = gb.tensor(kUidV, io, kvDims, contiguous(kvDims), "V");
    int64_t o = gb.tensor(kUidO, io, qDims, contiguous(qDims), "O");
    int64_t stats =
        gb.tensor(kUidStats, SdpaType::kF32, rowDims, rowStrides, "Stats");
    int64_t sc = gb.matmul(q, kt, gb.virt(SdpaType::kF32, scores, "S"), "bmm1");
    sc = gb.pointwiseLike(SdpaPw::kMul, {sc, scale}, "attn_scale");
    if (s.causal)
      sc = gb.causalMask(sc, S, T);
    int64_t mx =
        gb.reduce(SdpaReduce::kMax, sc,
                  gb.virt(SdpaType::kF32, rowDims, rowStrides, "M"), "max");
    int64_t e = gb.pointwiseLike(SdpaPw::kSub, {sc, mx}, "sub_M");
    e = gb.pointwiseLike(SdpaPw::kExp, {e}, "exp");
    int64_t z =
        gb.reduce(SdpaReduce::kAdd, e,
                  gb.virt(SdpaType::kF32, rowDims, rowStrides, "Z"), "sum");
    int64_t lz = gb.pointwiseLike(SdpaPw::kLog, {z}, "log");
    gb.pointwise(SdpaPw::kAdd, {mx, lz}, stats, "stats");
    // P in the inputs' type: the second product's A operand.
    int64_t p = gb.virt(io, scores, "P");
    gb.pointwise(SdpaPw::kDiv, {e, z}, p, "div");
    gb.matmul(p, v, o, "bmm2");
    return std::move(gb.g);
  }

  // Backward.
  int64_t vt = gb.tensor(kUidV, io, kvT, kvTStrides, "V^T");
  int64_t o = gb.tensor(kUidO, io, qDims, contiguous(qDims), "O");
  int64_t dO = gb.tensor(kUidDO, io, qDims, contiguous(qDims), "dO");
  int64_t stats =
      gb.tensor(kUidStats, SdpaType::kF32, rowDims, rowStrides, "Stats");
  int64_t dQ = gb.tensor(kUidDQ, io, qDims, contiguous(qDims), "dQ");
  int64_t dK = gb.tensor(kUidDK, io, kvDims, contiguous(kvDims), "dK");
  int64_t dV = gb.tensor(kUidDV, io, kvDims, contiguous(kvDims), "dV");
  int64_t one = gb.scalar(kUidOne, SdpaType::kF32, "one");
  // sum_i = rowsum(dO * O), kept in the workspace (non-virtual).
  int64_t dOO = gb.pointwiseLike(SdpaPw::kMul, {dO, o}, "mul_dO_O");
  int64_t red =
      gb.reduce(SdpaReduce::kAdd, dOO,
                gb.virt(SdpaType::kF32, rowDims, rowStrides, "reduce_dO_O"),
                "reduce_dO_O");
  int64_t sum = gb.tensor(kUidSoftmaxSum, SdpaType::kF32, rowDims, rowStrides,
                          "softmax_sum");
  gb.pointwise(SdpaPw::kMul, {red, one}, sum, "softmax_sum");
  // P = exp(S * scale - Stats), masked.
  int64_t sc =
      gb.matmul(q, kt, gb.virt(SdpaType::kF32, scores, "S"), "matmul_Q_KT");
  sc = gb.pointwiseLike(SdpaPw::kMul, {sc, scale}, "mul_s_attn_scale");
  sc = gb.pointwiseLike(SdpaPw::kSub, {sc, stats}, "sub_s_stats");
  if (s.causal)
    sc = gb.causalMask(sc, S, T);
  int64_t p = gb.pointwiseLike(SdpaPw::kExp, {sc}, "exp_s");
  // P^T [B, H, T, S]: a transposed view in the inputs' type.
  const Dims4 scoresT{B, H, T, S}, scoresTStrides{H * S * T, S * T, 1, T};
  int64_t pT =
      gb.reshape(p, gb.virt(io, scoresT, scoresTStrides, "P^T"), "reshape_p");
  // dV = P^T dO, summed over each kv head's group for GQA.
  if (H == Hk) {
    gb.matmul(pT, dO, dV, "matmul_pT_dO");
  } else {
    int64_t full = gb.matmul(
        pT, dO, gb.virt(io, Dims4{B, H, T, D}, "dV_fullhead"), "matmul_pT_dO");
    gb.reduce(SdpaReduce::kAdd, full, dV, "red_dV_head");
  }
  // dS = (dO V^T - sum) * P * scale.
  int64_t dp =
      gb.matmul(dO, vt, gb.virt(SdpaType::kF32, scores, "dP"), "matmul_dO_VT");
  int64_t ds = gb.pointwiseLike(SdpaPw::kSub, {dp, sum}, "sub_dP_sum");
  ds = gb.pointwiseLike(SdpaPw::kMul, {ds, p}, "mul_dP_exp_s");
  ds = gb.pointwiseLike(SdpaPw::kMul, {ds, scale}, "mul_dS_attn_scale");
  // dK = dS^T Q, summed over the group.
  int64_t dsT = gb.reshape(ds, gb.virt(io, scoresT, scoresTStrides, "dS^T"),
                           "reshape_dS");
  if (H == Hk) {
    gb.matmul(dsT, q, dK, "matmul_dST_Q");
  } else {
    int64_t full = gb.matmul(
        dsT, q, gb.virt(io, Dims4{B, H, T, D}, "dK_fullhead"), "matmul_dST_Q");
    gb.reduce(SdpaReduce::kAdd, full, dK, "red_dK_head");
  }
  // dQ = dS K: K^T's buffer reshaped back to [B, Hk, T, D] (a virtual
  // tensor of the intermediate type, f32, as cudnn-frontend leaves it);
  // summed in an f32 accumulator in the workspace, then cast.
  int64_t k =
      gb.reshape(kt, gb.virt(SdpaType::kF32, kvDims, contiguous(kvDims), "K"),
                 "reshape_k");
  int64_t acc = gb.tensor(kUidDQAccum, SdpaType::kF32, qDims, contiguous(qDims),
                          "dQ_accum");
  gb.matmul(ds, k, acc, "matmul_dS_K");
  gb.pointwise(SdpaPw::kIdentity, {acc}, dQ, "identity_dQ");
  return std::move(gb.g);
}

//===----------------------------------------------------------------------===//
// cuDNN: loading and lowering
//===----------------------------------------------------------------------===//

#ifdef COLOSSAL_HAVE_CUDNN

namespace {

#ifndef COLOSSAL_CUDNN_LIBRARY_PATH
#define COLOSSAL_CUDNN_LIBRARY_PATH ""
#endif

/// The entry points, resolved from libcudnn.so.9 (the front library,
/// which loads cuDNN's sub-libraries itself). Types from the headers;
/// nothing here is linked.
struct Api {
  decltype(&cudnnGetVersion) getVersion = nullptr;
  decltype(&cudnnGetErrorString) getErrorString = nullptr;
  decltype(&cudnnGetLastErrorString) getLastErrorString = nullptr;
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnDestroy) destroy = nullptr;
  decltype(&cudnnSetStream) setStream = nullptr;
  decltype(&cudnnBackendCreateDescriptor) createDesc = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroyDesc = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendSetAttribute) setAttr = nullptr;
  decltype(&cudnnBackendGetAttribute) getAttr = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;
  int64_t version = 0;
  std::string why; ///< why not loaded
};

const Api &api() {
  static Api a;
  static std::once_flag once;
  std::call_once(once, [] {
    void *lib = nullptr;
    std::string tried;
    // COLOSSAL_CUDNN_LIBRARY (a path) first, then the loader's search
    // (LD_LIBRARY_PATH, ld.so.cache), then the library CMake found.
    const char *env = std::getenv("COLOSSAL_CUDNN_LIBRARY");
    for (const char *name :
         {env ? env : "", "libcudnn.so.9", COLOSSAL_CUDNN_LIBRARY_PATH}) {
      if (!*name)
        continue;
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib)
        break;
      const char *err = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (err ? err : name);
    }
    if (!lib) {
      a.why = "cannot load libcudnn.so.9 (" + tried + ")";
      return;
    }
    bool missing = false;
    auto get = [&](auto &fn, const char *name, bool required = true) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
          dlsym(lib, name));
      if (!fn && required && !missing) {
        missing = true;
        a.why = std::string("libcudnn.so.9 lacks ") + name;
      }
    };
    get(a.getVersion, "cudnnGetVersion");
    get(a.getErrorString, "cudnnGetErrorString");
    get(a.getLastErrorString, "cudnnGetLastErrorString", false);
    get(a.create, "cudnnCreate");
    get(a.destroy, "cudnnDestroy");
    get(a.setStream, "cudnnSetStream");
    get(a.createDesc, "cudnnBackendCreateDescriptor");
    get(a.destroyDesc, "cudnnBackendDestroyDescriptor");
    get(a.finalize, "cudnnBackendFinalize");
    get(a.setAttr, "cudnnBackendSetAttribute");
    get(a.getAttr, "cudnnBackendGetAttribute");
    get(a.execute, "cudnnBackendExecute");
    if (missing)
      return; // the library stays open: harmless, and it is loaded once
    a.version = static_cast<int64_t>(a.getVersion());
    if (a.version < 90000) {
      a.why = "libcudnn.so.9 reports version " + std::to_string(a.version);
      a.version = 0;
    }
  });
  return a;
}

/// The status's name and cuDNN's last error message, for a Status.
std::string describe(cudnnStatus_t st) {
  const Api &a = api();
  std::string out = a.getErrorString ? a.getErrorString(st) : "error";
  out += " (" + std::to_string(static_cast<int>(st)) + ")";
  if (a.getLastErrorString) {
    char buf[512] = {0};
    a.getLastErrorString(buf, sizeof(buf));
    if (buf[0])
      out += ": " + std::string(buf);
  }
  return out;
}

/// The descriptors of one graph and plan, destroyed together.
struct Descs {
  std::vector<cudnnBackendDescriptor_t> all;
  ~Descs() {
    if (!api().destroyDesc)
      return;
    for (auto it = all.rbegin(); it != all.rend(); ++it)
      api().destroyDesc(*it);
  }
  void dropLast() {
    api().destroyDesc(all.back());
    all.pop_back();
  }
};

/// Collects the first failure of a sequence of backend calls.
struct Builder {
  Descs &descs;
  std::string error;

  bool ok() const { return error.empty(); }
  bool check(cudnnStatus_t st, const std::string &what) {
    if (st != CUDNN_STATUS_SUCCESS && error.empty())
      error = what + ": " + describe(st);
    return st == CUDNN_STATUS_SUCCESS;
  }
  cudnnBackendDescriptor_t create(cudnnBackendDescriptorType_t type,
                                  const std::string &what) {
    cudnnBackendDescriptor_t d = nullptr;
    if (!ok() || !check(api().createDesc(type, &d), "create " + what))
      return nullptr;
    descs.all.push_back(d);
    return d;
  }
  void set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
           cudnnBackendAttributeType_t type, int64_t count, const void *v,
           const std::string &what) {
    if (ok() && d)
      check(api().setAttr(d, name, type, count, v), what);
  }
  void setDesc(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
               cudnnBackendDescriptor_t v, const std::string &what) {
    set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v, what);
  }
  void finalize(cudnnBackendDescriptor_t d, const std::string &what) {
    if (ok() && d)
      check(api().finalize(d), "finalize " + what);
  }
};

cudnnDataType_t dataType(SdpaType t) {
  switch (t) {
  case SdpaType::kBF16:
    return CUDNN_DATA_BFLOAT16;
  case SdpaType::kF16:
    return CUDNN_DATA_HALF;
  case SdpaType::kI32:
    return CUDNN_DATA_INT32;
  case SdpaType::kBool:
    return CUDNN_DATA_BOOLEAN;
  default:
    return CUDNN_DATA_FLOAT;
  }
}

cudnnPointwiseMode_t pointwiseMode(SdpaPw m) {
  switch (m) {
  case SdpaPw::kAdd:
    return CUDNN_POINTWISE_ADD;
  case SdpaPw::kSub:
    return CUDNN_POINTWISE_SUB;
  case SdpaPw::kMul:
    return CUDNN_POINTWISE_MUL;
  case SdpaPw::kDiv:
    return CUDNN_POINTWISE_DIV;
  case SdpaPw::kExp:
    return CUDNN_POINTWISE_EXP;
  case SdpaPw::kLog:
    return CUDNN_POINTWISE_LOG;
  case SdpaPw::kCmpGe:
    return CUDNN_POINTWISE_CMP_GE;
  case SdpaPw::kGenIndex:
    return CUDNN_POINTWISE_GEN_INDEX;
  case SdpaPw::kBinarySelect:
    return CUDNN_POINTWISE_BINARY_SELECT;
  default:
    return CUDNN_POINTWISE_IDENTITY;
  }
}

/// Lowers every tensor and op of `g` (each finalized) into `descs`;
/// returns the op descriptors in graph order, or sets b.error.
std::vector<cudnnBackendDescriptor_t> lowerGraph(const SdpaGraph &g,
                                                 Builder &b) {
  std::map<int64_t, cudnnBackendDescriptor_t> tensors;
  for (const SdpaTensor &t : g.tensors) {
    const std::string what = "tensor " + t.name;
    cudnnBackendDescriptor_t d =
        b.create(CUDNN_BACKEND_TENSOR_DESCRIPTOR, what);
    cudnnDataType_t type = dataType(t.type);
    int64_t alignment = 16;
    bool isVirtual = t.isVirtual, byValue = t.byValue;
    b.set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type,
          what + " data type");
    b.set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, t.dims.data(),
          what + " dims");
    b.set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, t.strides.data(),
          what + " strides");
    b.set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &t.uid,
          what + " uid");
    b.set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment,
          what + " alignment");
    b.set(d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &isVirtual,
          what + " virtual");
    if (byValue)
      b.set(d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byValue,
            what + " by value");
    b.finalize(d, what);
    tensors[t.uid] = d;
  }
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const SdpaOp &o : g.ops) {
    if (!b.ok())
      break;
    const std::string what = "op " + o.name;
    cudnnDataType_t compute = dataType(o.compute);
    cudnnBackendDescriptor_t op = nullptr;
    switch (o.kind) {
    case SdpaOpKind::kMatmul: {
      cudnnBackendDescriptor_t mm =
          b.create(CUDNN_BACKEND_MATMUL_DESCRIPTOR, what + " matmul");
      b.set(mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute,
            what + " comp type");
      b.finalize(mm, what + " matmul");
      op = b.create(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, what);
      b.setDesc(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, tensors[o.in[0]],
                what + " A");
      b.setDesc(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, tensors[o.in[1]],
                what + " B");
      b.setDesc(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, tensors[o.out],
                what + " C");
      b.setDesc(op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm, what + " desc");
      break;
    }
    case SdpaOpKind::kPointwise: {
      cudnnBackendDescriptor_t pw =
          b.create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what + " pointwise");
      cudnnPointwiseMode_t mode = pointwiseMode(o.pw);
      b.set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode,
            what + " mode");
      b.set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1,
            &compute, what + " math prec");
      if (o.pw == SdpaPw::kGenIndex)
        b.set(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &o.axis,
              what + " axis");
      b.finalize(pw, what + " pointwise");
      op = b.create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
      b.setDesc(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw,
                what + " pw desc");
      b.setDesc(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, tensors[o.in[0]],
                what + " x");
      if (o.in.size() > 1)
        b.setDesc(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, tensors[o.in[1]],
                  what + " b");
      if (o.in.size() > 2)
        b.setDesc(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, tensors[o.in[2]],
                  what + " t");
      b.setDesc(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, tensors[o.out],
                what + " y");
      break;
    }
    case SdpaOpKind::kReduction: {
      cudnnBackendDescriptor_t rd =
          b.create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, what + " reduction");
      cudnnReduceTensorOp_t mode = o.reduce == SdpaReduce::kMax
                                       ? CUDNN_REDUCE_TENSOR_MAX
                                       : CUDNN_REDUCE_TENSOR_ADD;
      b.set(rd, CUDNN_ATTR_REDUCTION_OPERATOR,
            CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode, what + " operator");
      b.set(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1,
            &compute, what + " comp type");
      b.finalize(rd, what + " reduction");
      op = b.create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, what);
      b.setDesc(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, tensors[o.in[0]],
                what + " x");
      b.setDesc(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, tensors[o.out],
                what + " y");
      b.setDesc(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd, what + " desc");
      break;
    }
    case SdpaOpKind::kReshape:
      op = b.create(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, what);
      b.setDesc(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, tensors[o.in[0]],
                what + " x");
      b.setDesc(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, tensors[o.out],
                what + " y");
      break;
    }
    b.finalize(op, what);
    ops.push_back(op);
  }
  return ops;
}

// The handle attributes are marked deprecated in cuDNN 9 but still read
// (and, before 9.8, required); named by value to keep the build quiet.
constexpr auto kOpGraphHandle = static_cast<cudnnBackendAttributeName_t>(800);
constexpr auto kPlanHandle = static_cast<cudnnBackendAttributeName_t>(400);

} // namespace

int64_t cudnnLoadedVersion(std::string *why) {
  const Api &a = api();
  if (why)
    *why = a.why;
  return a.version;
}

Status cudnnSdpaLowerWithoutDevice(const SdpaGraph &graph,
                                   bool withOperationGraph) {
  std::string why;
  if (cudnnLoadedVersion(&why) == 0)
    return Status(StatusCode::kUnsupported, why);
  Descs descs;
  Builder b{descs, {}};
  std::vector<cudnnBackendDescriptor_t> ops = lowerGraph(graph, b);
  if (b.ok() && withOperationGraph) {
    cudnnBackendDescriptor_t og =
        b.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
    b.set(og, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
          static_cast<int64_t>(ops.size()), ops.data(), "operation graph ops");
    b.finalize(og, "operation graph");
  }
  if (!b.ok())
    return Status(StatusCode::kInternal, b.error);
  return Status::ok();
}

//===----------------------------------------------------------------------===//
// CudnnAttention
//===----------------------------------------------------------------------===//

struct CudnnAttention::Impl {
  struct Entry {
    std::string reason; ///< non-empty: cuDNN does not take this shape
    std::unique_ptr<Descs> descs;
    cudnnBackendDescriptor_t plan = nullptr;
    SdpaGraph graph;
    SdpaGraph::Layout layout;
    // By-value scalars: the variant pack points here.
    float scale = 1.f, negInf = -INFINITY, one = 1.f;
    int32_t seqKv = 0, seqQ = 0;
  };
  cudnnHandle_t handle = nullptr;
  std::string handleError;
  std::map<CudnnSdpaShape, Entry> cache;

  ~Impl() {
    cache.clear(); // the plans before the handle
    if (handle)
      api().destroy(handle);
  }

  /// Operation graph, heuristics, the first config whose plan finalizes.
  void build(const CudnnSdpaShape &shape, Entry &e) {
    e.graph = buildSdpaGraph(shape);
    e.descs = std::make_unique<Descs>();
    Builder b{*e.descs, {}};
    std::vector<cudnnBackendDescriptor_t> ops = lowerGraph(e.graph, b);
    cudnnBackendDescriptor_t og =
        b.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
    b.set(og, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
          static_cast<int64_t>(ops.size()), ops.data(), "operation graph ops");
    b.set(og, kOpGraphHandle, CUDNN_TYPE_HANDLE, 1, &handle,
          "operation graph handle");
    b.finalize(og, "operation graph");
    if (!b.ok()) {
      e.reason = b.error;
      return;
    }
    std::string firstFailure;
    for (cudnnBackendHeurMode_t mode :
         {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      Builder hb{*e.descs, {}};
      cudnnBackendDescriptor_t heur =
          hb.create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
      hb.setDesc(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, og,
                 "heuristics graph");
      hb.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode,
             "heuristics mode");
      hb.finalize(heur, "heuristics");
      int64_t count = 0;
      if (hb.ok())
        hb.check(api().getAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr),
                 "heuristics result count");
      std::vector<cudnnBackendDescriptor_t> cfgs;
      for (int64_t i = 0; i < count && hb.ok(); ++i)
        cfgs.push_back(
            hb.create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config"));
      int64_t got = 0;
      if (hb.ok() && count > 0)
        hb.check(api().getAttr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               cfgs.data()),
                 "heuristics results");
      if (!hb.ok()) {
        if (firstFailure.empty())
          firstFailure = hb.error;
        continue;
      }
      for (int64_t i = 0; i < got; ++i) {
        Builder pb{*e.descs, {}};
        cudnnBackendDescriptor_t plan =
            pb.create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, "plan");
        pb.set(plan, kPlanHandle, CUDNN_TYPE_HANDLE, 1, &handle, "plan handle");
        pb.setDesc(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfgs[i],
                   "plan engine config");
        pb.finalize(plan, "plan (engine config " + std::to_string(i) + ")");
        int64_t workspace = 0, n = 0;
        if (pb.ok())
          pb.check(api().getAttr(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                 CUDNN_TYPE_INT64, 1, &n, &workspace),
                   "plan workspace size");
        if (pb.ok()) {
          e.plan = plan;
          e.layout = e.graph.layout(static_cast<size_t>(workspace));
          return;
        }
        if (firstFailure.empty())
          firstFailure = pb.error;
        if (plan)
          e.descs->dropLast(); // the failed plan
      }
    }
    e.reason =
        "no cuDNN engine takes the graph" +
        (firstFailure.empty() ? std::string(" (no engine configs)")
                              : " (first failure: " + firstFailure + ")");
  }

  Entry &entry(const CudnnSdpaShape &shape) {
    auto it = cache.find(shape);
    if (it != cache.end())
      return it->second;
    Entry &e = cache[shape];
    std::string why;
    int64_t version = cudnnLoadedVersion(&why);
    if (version == 0) {
      e.reason = why;
      return e;
    }
    e.reason = cudnnSdpaUnsupportedReason(shape, version);
    if (!e.reason.empty())
      return e;
    if (!handle && handleError.empty()) {
      cudnnStatus_t st = api().create(&handle);
      if (st != CUDNN_STATUS_SUCCESS) {
        handle = nullptr;
        handleError = "cudnnCreate: " + describe(st);
      }
    }
    if (!handle) {
      e.reason = handleError;
      return e;
    }
    e.negInf =
        version < 91000 ? std::numeric_limits<float>::lowest() : -INFINITY;
    e.seqKv = static_cast<int32_t>(shape.cols);
    e.seqQ = static_cast<int32_t>(shape.rows);
    build(shape, e);
    return e;
  }
};

CudnnAttention::CudnnAttention() : impl_(std::make_unique<Impl>()) {}
CudnnAttention::~CudnnAttention() = default;

Status CudnnAttention::prepare(const CudnnSdpaShape &shape,
                               size_t *workspaceBytes) {
  Impl::Entry &e = impl_->entry(shape);
  if (!e.reason.empty())
    return Status(StatusCode::kUnsupported, e.reason);
  *workspaceBytes = e.layout.totalBytes;
  return Status::ok();
}

Status CudnnAttention::run(cudaStream_t stream, const AttentionCall &call,
                           bool backward) {
  CudnnSdpaShape shape = CudnnSdpaShape::of(call, backward);
  Impl::Entry &e = impl_->entry(shape);
  if (!e.reason.empty())
    return Status(StatusCode::kUnsupported, e.reason);
  auto aligned = [](const void *p) {
    return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
  };
  std::map<int64_t, void *> ptr;
  uint8_t *ws = static_cast<uint8_t *>(call.scratch);
  ptr[kUidQ] = const_cast<void *>(call.q);
  ptr[kUidK] = const_cast<void *>(call.k);
  ptr[kUidV] = const_cast<void *>(call.v);
  ptr[kUidScale] = &e.scale;
  ptr[kUidNegInf] = &e.negInf;
  ptr[kUidOne] = &e.one;
  ptr[kUidSeqKv] = &e.seqKv;
  ptr[kUidSeqQ] = &e.seqQ;
  if (!backward) {
    ptr[kUidO] = call.o;
    ptr[kUidStats] = call.lseOut;
  } else {
    ptr[kUidO] = const_cast<void *>(call.out);
    ptr[kUidStats] = const_cast<float *>(call.lse);
    ptr[kUidDO] = const_cast<void *>(call.dout);
    ptr[kUidDQ] = call.dq;
    ptr[kUidDK] = call.dk;
    ptr[kUidDV] = call.dv;
    ptr[kUidSoftmaxSum] = ws ? ws + e.layout.softmaxSumOffset : nullptr;
    ptr[kUidDQAccum] = ws ? ws + e.layout.dqAccumOffset : nullptr;
  }
  if (e.layout.totalBytes > 0 &&
      (!ws || call.scratchBytes < e.layout.totalBytes))
    return Status(StatusCode::kUnsupported,
                  "its workspace (" + std::to_string(e.layout.totalBytes) +
                      " bytes) does not fit the scratch (" +
                      std::to_string(call.scratchBytes) + " bytes)");
  std::vector<int64_t> uids;
  std::vector<void *> pointers;
  for (const SdpaTensor &t : e.graph.tensors) {
    if (t.isVirtual)
      continue;
    void *p = ptr[t.uid];
    if (!p)
      return Status(StatusCode::kInternal,
                    "cuDNN attention: no pointer for " + t.name);
    if (!t.byValue && !aligned(p))
      return Status(StatusCode::kUnsupported,
                    t.name + " is not 16-byte aligned");
    uids.push_back(t.uid);
    pointers.push_back(p);
  }
  e.scale = static_cast<float>(call.scale);
  const Api &a = api();
  cudnnStatus_t st = a.setStream(impl_->handle, stream);
  if (st != CUDNN_STATUS_SUCCESS)
    return Status(StatusCode::kInternal, "cudnnSetStream: " + describe(st));
  // Before cuDNN 9.6 the dQ accumulator had to start at zero
  // (cudnn-frontend cleared it); later versions clear it themselves.
  if (backward && a.version < 90600) {
    const SdpaTensor *acc = e.graph.find(kUidDQAccum);
    size_t bytes = 4;
    for (int64_t d : acc->dims)
      bytes *= static_cast<size_t>(d);
    cudaError_t err = cudaMemsetAsync(ptr[kUidDQAccum], 0, bytes, stream);
    if (err != cudaSuccess)
      return Status(StatusCode::kInternal,
                    std::string("cudaMemsetAsync (cuDNN's dQ accumulator): ") +
                        cudaGetErrorString(err));
  }
  Descs descs;
  Builder b{descs, {}};
  cudnnBackendDescriptor_t pack =
      b.create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
  b.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
        static_cast<int64_t>(uids.size()), uids.data(), "variant pack uids");
  b.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
        static_cast<int64_t>(pointers.size()), pointers.data(),
        "variant pack pointers");
  void *workspace = ws;
  b.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
        &workspace, "variant pack workspace");
  b.finalize(pack, "variant pack");
  if (b.ok())
    b.check(a.execute(impl_->handle, e.plan, pack), "cudnnBackendExecute");
  if (!b.ok())
    return Status(StatusCode::kInternal, b.error);
  ++callsRun;
  return Status::ok();
}

#else // !COLOSSAL_HAVE_CUDNN

namespace {
const char *kNoCudnn =
    "this build has no cuDNN (CMake found no cudnn_graph.h and libcudnn "
    "in the CUDA toolkit's directories)";
}

int64_t cudnnLoadedVersion(std::string *why) {
  if (why)
    *why = kNoCudnn;
  return 0;
}

Status cudnnSdpaLowerWithoutDevice(const SdpaGraph &, bool) {
  return Status(StatusCode::kUnsupported, kNoCudnn);
}

struct CudnnAttention::Impl {};
CudnnAttention::CudnnAttention() : impl_(std::make_unique<Impl>()) {}
CudnnAttention::~CudnnAttention() = default;

Status CudnnAttention::prepare(const CudnnSdpaShape &, size_t *) {
  return Status(StatusCode::kUnsupported, kNoCudnn);
}

Status CudnnAttention::run(cudaStream_t, const AttentionCall &, bool) {
  return Status(StatusCode::kUnsupported, kNoCudnn);
}

#endif // COLOSSAL_HAVE_CUDNN

uint64_t cudnnAttentionCallsRun() { return callsRun.load(); }

} // namespace colossal::runtime::cuda
