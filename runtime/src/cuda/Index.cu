//===- Index.cu - gather, gather_nd, gather_elements and their gradients --===//
//
// Indices are checked on the device: an index outside [-size, size) is
// recorded (ErrorSink) and its element written as zero. The gradients are
// gathers, not scatters: each output element (gather_elements_grad) or row
// (gather_grad) sums the gradient entries whose index selects it, in index
// order. No atomics, so the result is deterministic and equals the CPU's f64
// sum in the same order. gather_grad sorts first: each index j becomes the
// key (index + 1) << 32 | j (0 << 32 for an index out of range), radix
// sorted by cub in the backend's scratch, so the entries of one output row
// are one run of the sorted keys, in position order whatever the sort's
// stability; each output row finds its run by binary search and sums it in
// that order. gather_elements_grad (and gather_grad beyond 2^31 indices or
// 2^32 - 1 rows) still scans the indices per output element.
//
//===----------------------------------------------------------------------===//

#include "CudaCommon.cuh"

#include <cub/device/device_radix_sort.cuh>

namespace colossal::runtime::cuda {

namespace {

/// Normalises `value` into [0, size) or reports it and returns -1.
__device__ int64_t checkIndex(const ErrorSink &sink, int64_t value,
                              int64_t size, int64_t dim) {
  if (value < -size || value >= size) {
    reportError(sink, kErrIndexRange, value, size, dim);
    return -1;
  }
  return value < 0 ? value + size : value;
}

__global__ void gatherKernel(ErrorSink sink, int elemBytes, int64_t length,
                             int64_t inner, DType indexType, int64_t count,
                             const void *indices, const void *data, void *out,
                             int64_t n) {
  COLOSSAL_GRID_STRIDE(e, n) {
    int64_t k = e % inner, j = (e / inner) % count, o = e / (inner * count);
    int64_t index = checkIndex(sink, loadI(indices, indexType, j), length, -1);
    if (index < 0)
      storeBits(out, e, 0, elemBytes);
    else
      copyElement(out, e, data, (o * length + index) * inner + k, elemBytes);
  }
}

__global__ void gatherNDKernel(ErrorSink sink, int elemBytes, Dims dataDims,
                               Dims dataStrides, int batchDims, int depth,
                               int64_t tuplesPerBatch, int64_t sliceElems,
                               int64_t batchElems, DType indexType,
                               const void *indices, const void *data, void *out,
                               int64_t n) {
  COLOSSAL_GRID_STRIDE(e, n) {
    int64_t tuple = e / sliceElems, k = e % sliceElems;
    int64_t offset = (tuple / tuplesPerBatch) * batchElems;
    bool ok = true;
    for (int j = 0; j < depth; ++j) {
      int64_t dim = dataDims.d[batchDims + j];
      int64_t index =
          checkIndex(sink, loadI(indices, indexType, tuple * depth + j), dim,
                     batchDims + j);
      if (index < 0) {
        ok = false;
        break;
      }
      offset += index * dataStrides.d[batchDims + j];
    }
    if (ok)
      copyElement(out, e, data, offset + k, elemBytes);
    else
      storeBits(out, e, 0, elemBytes);
  }
}

__global__ void gatherElementsKernel(ErrorSink sink, int elemBytes,
                                     Dims dataDims, Dims dataStrides, int axis,
                                     Dims indexDims, DType indexType,
                                     const void *indices, const void *data,
                                     void *out, int64_t n) {
  COLOSSAL_GRID_STRIDE(e, n) {
    // The data offset of the index position, with the axis coordinate
    // replaced by the index.
    int64_t flat = e, offset = 0;
    for (int d = indexDims.rank - 1; d >= 0; --d) {
      int64_t coord = flat % indexDims.d[d];
      flat /= indexDims.d[d];
      if (d != axis)
        offset += coord * dataStrides.d[d];
    }
    int64_t index =
        checkIndex(sink, loadI(indices, indexType, e), dataDims.d[axis], -1);
    if (index < 0)
      storeBits(out, e, 0, elemBytes);
    else
      copyElement(out, e, data, offset + index * dataStrides.d[axis],
                  elemBytes);
  }
}

/// Reports every index out of [-size, size) (the gradients check them all
/// first, as the CPU does, even those no output element reads).
__global__ void checkIndicesKernel(ErrorSink sink, DType indexType,
                                   int64_t count, int64_t size,
                                   const void *indices, int64_t *normalized) {
  COLOSSAL_GRID_STRIDE(i, count) {
    int64_t index = checkIndex(sink, loadI(indices, indexType, i), size, -1);
    if (normalized)
      normalized[i] = index;
  }
}

__global__ void gatherElementsGradKernel(DType gradType, DType outType,
                                         Dims outDims, int axis, Dims indexDims,
                                         Dims indexStrides, DType indexType,
                                         const void *indices, const void *grad,
                                         void *out, int64_t n) {
  COLOSSAL_GRID_STRIDE(e, n) {
    int64_t flat = e, base = 0, target = 0;
    bool inside = true;
    for (int d = outDims.rank - 1; d >= 0; --d) {
      int64_t coord = flat % outDims.d[d];
      flat /= outDims.d[d];
      if (d == axis) {
        target = coord;
      } else {
        inside &= coord < indexDims.d[d];
        base += coord * indexStrides.d[d];
      }
    }
    double sum = 0.0;
    if (inside) {
      int64_t size = outDims.d[axis];
      for (int64_t t = 0; t < indexDims.d[axis]; ++t) {
        int64_t at = base + t * indexStrides.d[axis];
        int64_t index = loadI(indices, indexType, at);
        if (index < 0)
          index += size; // out of range was reported by checkIndicesKernel
        if (index == target)
          sum += loadF(grad, gradType, at);
      }
    }
    storeF(out, outType, e, sum);
  }
}

/// One block per output row (o, r); threads over the row's elements, each
/// summing the gradient rows whose normalised index is r.
__global__ void gatherGradKernel(DType gradType, DType outType, int64_t outer,
                                 int64_t length, int64_t inner, int64_t count,
                                 const int64_t *normalized, int64_t paddingIdx,
                                 const void *grad, void *out) {
  for (int64_t row = blockIdx.x; row < outer * length; row += gridDim.x) {
    int64_t o = row / length, r = row % length;
    for (int64_t k = threadIdx.x; k < inner; k += blockDim.x) {
      double sum = 0.0;
      if (r != paddingIdx)
        for (int64_t j = 0; j < count; ++j)
          if (normalized[j] == r)
            sum += loadF(grad, gradType, (o * count + j) * inner + k);
      storeF(out, outType, row * inner + k, sum);
    }
  }
}

/// Sort keys of the normalised indices (gather_grad's sorted path).
__global__ void sortKeysKernel(int64_t count, const int64_t *normalized,
                               uint64_t *keys) {
  COLOSSAL_GRID_STRIDE(j, count) {
    uint64_t row = static_cast<uint64_t>(normalized[j] + 1); // -1: invalid
    keys[j] = row << 32 | static_cast<uint64_t>(j);
  }
}

/// The first position in sorted[0, count) whose key is >= key.
__device__ int64_t lowerBound(const uint64_t *sorted, int64_t count,
                              uint64_t key) {
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/// One block per output row: its run of sorted keys, summed in position
/// order (the CPU's order) in f64.
__global__ void gatherGradSortedKernel(DType gradType, DType outType,
                                       int64_t outer, int64_t length,
                                       int64_t inner, int64_t count,
                                       const uint64_t *sorted,
                                       int64_t paddingIdx, const void *grad,
                                       void *out) {
  __shared__ int64_t run[2];
  for (int64_t row = blockIdx.x; row < outer * length; row += gridDim.x) {
    int64_t o = row / length, r = row % length;
    if (threadIdx.x == 0) {
      uint64_t key = static_cast<uint64_t>(r + 1) << 32;
      run[0] = lowerBound(sorted, count, key);
      run[1] = lowerBound(sorted, count, key + (uint64_t{1} << 32));
    }
    __syncthreads();
    int64_t lo = r == paddingIdx ? 0 : run[0];
    int64_t hi = r == paddingIdx ? 0 : run[1];
    for (int64_t k = threadIdx.x; k < inner; k += blockDim.x) {
      double sum = 0.0;
      for (int64_t j = lo; j < hi; ++j) {
        int64_t pos = static_cast<int64_t>(sorted[j] & 0xffffffffu);
        sum += loadF(grad, gradType, (o * count + pos) * inner + k);
      }
      storeF(out, outType, row * inner + k, sum);
    }
    __syncthreads(); // run[] is rewritten for the next row
  }
}

/// The sorted path's limits: positions and rows + 1 fit 32 bits, and
/// cub's item count an int.
bool sortedGatherGrad(int64_t count, int64_t length) {
  return count > 0 && count < (int64_t{1} << 31) &&
         length < (int64_t{1} << 32) - 1;
}

/// Bits of the sort keys: 32 of position, the rest of (row + 1).
int sortEndBit(int64_t length) {
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) <= length)
    ++bits;
  return 32 + bits;
}

size_t roundUp256(size_t bytes) { return (bytes + 255) / 256 * 256; }

size_t cubSortBytes(int64_t count, int64_t length) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortKeys(nullptr, bytes,
                                 static_cast<const uint64_t *>(nullptr),
                                 static_cast<uint64_t *>(nullptr),
                                 static_cast<int>(count), 0,
                                 sortEndBit(length));
  return bytes;
}

} // namespace

size_t gatherGradScratchBytes(int64_t count, int64_t length) {
  size_t normalized = roundUp256(static_cast<size_t>(count) * sizeof(int64_t));
  if (!sortedGatherGrad(count, length))
    return normalized;
  size_t keys = roundUp256(static_cast<size_t>(count) * sizeof(uint64_t));
  return normalized + 2 * keys + cubSortBytes(count, length);
}

cudaError_t launchGather(cudaStream_t stream, ErrorSink sink, int elemBytes,
                         int64_t outer, int64_t length, int64_t inner,
                         DType indexType, int64_t count, const void *indices,
                         const void *data, void *out) {
  int64_t n = outer * count * inner;
  if (n == 0) {
    // Nothing is written, but the indices are still checked (the CPU
    // checks them all first).
    if (count == 0)
      return cudaSuccess;
    checkIndicesKernel<<<blocksFor(count), kThreads, 0, stream>>>(
        sink, indexType, count, length, indices, nullptr);
    return cudaGetLastError();
  }
  gatherKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, elemBytes, length, inner, indexType, count, indices, data, out, n);
  return cudaGetLastError();
}

cudaError_t launchGatherND(cudaStream_t stream, ErrorSink sink, int elemBytes,
                           const Dims &dataDims, int batchDims, int depth,
                           int64_t batches, int64_t tuplesPerBatch,
                           DType indexType, const void *indices,
                           const void *data, void *out) {
  Dims strides = rowMajorStrides(dataDims);
  int64_t sliceElems = 1, batchElems = 1;
  for (int d = batchDims + depth; d < dataDims.rank; ++d)
    sliceElems *= dataDims.d[d];
  for (int d = batchDims; d < dataDims.rank; ++d)
    batchElems *= dataDims.d[d];
  int64_t n = batches * tuplesPerBatch * sliceElems;
  if (n == 0 || tuplesPerBatch == 0)
    return cudaSuccess;
  gatherNDKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, elemBytes, dataDims, strides, batchDims, depth, tuplesPerBatch,
      sliceElems, batchElems, indexType, indices, data, out, n);
  return cudaGetLastError();
}

cudaError_t launchGatherElements(cudaStream_t stream, ErrorSink sink,
                                 int elemBytes, const Dims &dataDims, int axis,
                                 const Dims &indexDims, DType indexType,
                                 const void *indices, const void *data,
                                 void *out) {
  Dims strides = rowMajorStrides(dataDims);
  int64_t n = elementCount(indexDims);
  if (n == 0)
    return cudaSuccess;
  gatherElementsKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      sink, elemBytes, dataDims, strides, axis, indexDims, indexType, indices,
      data, out, n);
  return cudaGetLastError();
}

cudaError_t launchGatherElementsGrad(cudaStream_t stream, ErrorSink sink,
                                     DType gradType, DType outType,
                                     const Dims &outDims, int axis,
                                     const Dims &indexDims, DType indexType,
                                     const void *indices, const void *grad,
                                     void *out) {
  Dims strides = rowMajorStrides(indexDims);
  int64_t count = elementCount(indexDims);
  if (count > 0) {
    checkIndicesKernel<<<blocksFor(count), kThreads, 0, stream>>>(
        sink, indexType, count, outDims.d[axis], indices, nullptr);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
  }
  int64_t n = elementCount(outDims);
  if (n == 0)
    return cudaSuccess;
  gatherElementsGradKernel<<<blocksFor(n), kThreads, 0, stream>>>(
      gradType, outType, outDims, axis, indexDims, strides, indexType, indices,
      grad, out, n);
  return cudaGetLastError();
}

cudaError_t launchGatherGrad(cudaStream_t stream, ErrorSink sink,
                             DType gradType, DType outType, int64_t outer,
                             int64_t length, int64_t inner, DType indexType,
                             int64_t count, const void *indices,
                             int64_t paddingIdx, const void *grad, void *out,
                             int64_t *normalized) {
  if (count > 0) {
    checkIndicesKernel<<<blocksFor(count), kThreads, 0, stream>>>(
        sink, indexType, count, length, indices, normalized);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
      return err;
  }
  int64_t rows = outer * length;
  if (rows == 0 || inner == 0)
    return cudaSuccess;
  int threads =
      inner >= kThreads ? kThreads : static_cast<int>((inner + 31) / 32 * 32);
  if (!sortedGatherGrad(count, length)) {
    gatherGradKernel<<<blocksFor(rows, 1), threads, 0, stream>>>(
        gradType, outType, outer, length, inner, count, normalized,
        paddingIdx, grad, out);
    return cudaGetLastError();
  }
  // Scratch (gatherGradScratchBytes): normalized, keys, sorted keys, cub's.
  char *at = reinterpret_cast<char *>(normalized) +
             roundUp256(static_cast<size_t>(count) * sizeof(int64_t));
  size_t keyBytes = roundUp256(static_cast<size_t>(count) * sizeof(uint64_t));
  uint64_t *keys = reinterpret_cast<uint64_t *>(at);
  uint64_t *sorted = reinterpret_cast<uint64_t *>(at + keyBytes);
  void *temp = at + 2 * keyBytes;
  sortKeysKernel<<<blocksFor(count), kThreads, 0, stream>>>(count, normalized,
                                                           keys);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return err;
  size_t tempBytes = cubSortBytes(count, length);
  err = cub::DeviceRadixSort::SortKeys(temp, tempBytes, keys, sorted,
                                       static_cast<int>(count), 0,
                                       sortEndBit(length), stream);
  if (err != cudaSuccess)
    return err;
  gatherGradSortedKernel<<<blocksFor(rows, 1), threads, 0, stream>>>(
      gradType, outType, outer, length, inner, count, sorted, paddingIdx, grad,
      out);
  return cudaGetLastError();
}

} // namespace colossal::runtime::cuda
