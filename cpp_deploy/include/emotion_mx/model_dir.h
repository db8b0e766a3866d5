#pragma once
// An exported model directory (tools/export.py / tools/quantize.py):
//   DIR/model-symbol.json, DIR/model-0000.params, DIR/model.json (sidecar).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "emotion_mx/predictor.h"
#include "emotion_mx/whisper_frontend.h"

namespace emotion_mx {

struct ModelDir {
  std::string path;
  std::string precision;                 ///< "fp32" or "int8"
  std::vector<std::string> modalities;   ///< subset of audio, text, video (checked like Python)
  std::vector<std::string> labels;       ///< class names, index = class id
  std::vector<InputSpec> inputs;         ///< names and shapes (batch = export batch size)
  std::string symbol_file;
  std::string params_file;
  /// The sidecar's optional "frontend": {"audio": {...}}: how input "audio" (B, T, n_mels) is
  /// computed from raw audio (set for models on the Whisper log-mel front end).
  std::optional<WhisperFrontendConfig> audio_frontend;

  /// Reads and validates DIR/model.json; throws Error for a missing or malformed sidecar.
  static ModelDir open(const std::string& dir);
  /// A Predictor for this model with the given input shapes (batch may differ from export).
  Predictor make_predictor(const std::vector<InputSpec>& shapes) const;
};

}  // namespace emotion_mx
