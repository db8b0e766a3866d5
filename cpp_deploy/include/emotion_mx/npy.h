#pragma once
// Minimal .npy reader: little-endian float32 ('<f4'), C order, format versions 1-3.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "emotion_mx/error.h"

namespace emotion_mx {

struct NpyArray {
  std::vector<uint32_t> shape;
  std::vector<float> data;
};

/// Loads `path`; throws Error naming the file for a missing file, another dtype
/// (e.g. '<f8', '<i4'), Fortran order or a truncated payload.
NpyArray load_npy(const std::string& path);

/// Writes a float32 little-endian C-order .npy (format 1.0) to `path` (a temporary file
/// renamed into place); throws Error naming the file when it cannot be written.
void save_npy(const std::string& path, const std::vector<uint32_t>& shape, const std::vector<float>& data);

}  // namespace emotion_mx
