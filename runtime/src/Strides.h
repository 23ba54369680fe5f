//===- Strides.h - Element counts and strides of row-major shapes -*- C++ -*-===//
//
// Host-side shape arithmetic used by the CPU kernels (cpu/Kernels.cpp) and
// the CUDA backend (cuda/CudaBackend.cpp) when they set up a kernel: the
// element count of a range of dims, the strides of a contiguous tensor,
// and the strides of a tensor read as if broadcast to a larger shape.
// Internal to the runtime; plain C++17, no CUDA.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_STRIDES_H
#define COLOSSAL_RUNTIME_STRIDES_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace colossal::runtime {

/// The product of dims[begin, end) (1 for an empty range).
inline int64_t product(const std::vector<int64_t> &dims, size_t begin,
                       size_t end) {
  int64_t count = 1;
  for (size_t d = begin; d < end; ++d)
    count *= dims[d];
  return count;
}

inline int64_t product(const std::vector<int64_t> &dims) {
  return product(dims, 0, dims.size());
}

/// Row-major strides, in elements, of a contiguous tensor of shape `dims`.
inline std::vector<int64_t> contiguousStrides(const std::vector<int64_t> &dims) {
  std::vector<int64_t> strides(dims.size(), 1);
  for (size_t d = dims.size(); d-- > 1;)
    strides[d - 1] = strides[d] * dims[d];
  return strides;
}

/// Strides (in elements) of a tensor of shape `in` read as if broadcast to
/// `out`: one per dim of `out`, 0 where `in` is missing or has size 1.
inline std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &in,
                                             const std::vector<int64_t> &out) {
  std::vector<int64_t> inStrides = contiguousStrides(in);
  std::vector<int64_t> strides(out.size(), 0);
  size_t lead = out.size() - in.size();
  for (size_t d = 0; d < in.size(); ++d)
    strides[lead + d] = in[d] == 1 ? 0 : inStrides[d];
  return strides;
}

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_STRIDES_H
