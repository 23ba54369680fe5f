//===- Safetensors.h - Read and write .safetensors files ----------*- C++ -*-===//
//
// The format: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
// optionally "__metadata__": {string: string}}), then the data; offsets are
// relative to the end of the header. Readers validate everything: header
// length within the file, well-formed JSON, known dtypes, offsets inside the
// data and equal to dtype size x elements, no overlaps, no duplicate names.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_SAFETENSORS_H
#define COLOSSAL_RUNTIME_SAFETENSORS_H

#include "colossal/runtime/Status.h"
#include "colossal/runtime/Tensor.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace colossal::runtime {

/// A parsed file; tensors keep the file's order.
struct SafetensorsFile {
  std::vector<std::pair<std::string, HostTensor>> tensors;
  std::map<std::string, std::string> metadata;

  const HostTensor *find(const std::string &name) const;
};

Status readSafetensors(const uint8_t *data, size_t size, SafetensorsFile &out);
/// Errors name the path ("inputs.safetensors: header length 9999 exceeds
/// file size 120").
Status readSafetensorsFile(const std::string &path, SafetensorsFile &out);

Status writeSafetensors(const SafetensorsFile &file, std::vector<uint8_t> &out);
/// Writes to a temporary file beside `path` and renames it into place, so a
/// failed write never leaves a truncated file behind.
Status writeSafetensorsFile(const SafetensorsFile &file,
                            const std::string &path);

} // namespace colossal::runtime

#endif // COLOSSAL_RUNTIME_SAFETENSORS_H
