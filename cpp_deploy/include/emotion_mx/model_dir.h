#pragma once
// An exported model directory (tools/export.py / tools/quantize.py):
//   DIR/model-symbol.json, DIR/model-0000.params, DIR/model.json (sidecar).
#include <cstdint>
#include <string>
#include <vector>

#include "emotion_mx/predictor.h"

namespace emotion_mx {

struct ModelDir {
  std::string path;
  std::string precision;                 ///< "fp32" or "int8"
  std::vector<std::string> labels;       ///< class names, index = class id
  std::vector<InputSpec> inputs;         ///< names and shapes (batch = export batch size)
  std::string symbol_file;
  std::string params_file;

  /// Reads and validates DIR/model.json; throws Error for a missing or malformed sidecar.
  static ModelDir open(const std::string& dir);
  /// A Predictor for this model with the given input shapes (batch may differ from export).
  Predictor make_predictor(const std::vector<InputSpec>& shapes) const;
};

}  // namespace emotion_mx
