#pragma once
// RAII wrapper over MXNet's C predict API (mxnet/c_predict_api.h).
#include <cstddef>
#include <cstdint>  // c_predict_api.h uses uint32_t without including <cstdint>
#include <string>
#include <vector>

#include "emotion_mx/error.h"

namespace emotion_mx {

/// A named model input with its full shape (batch first).
struct InputSpec {
  std::string name;
  std::vector<uint32_t> shape;
  std::size_t size() const;  ///< number of elements
};

/// Owns one MXNet PredictorHandle (CPU).  Non-copyable, movable; every C API return code is
/// checked and turned into emotion_mx::Error carrying MXGetLastError().
class Predictor {
 public:
  /// symbol_json: the symbol file's text; params: the .params file's bytes.
  Predictor(const std::string& symbol_json, const std::string& params,
            std::vector<InputSpec> inputs);
  /// Reads DIR-style files from disk.
  static Predictor from_files(const std::string& symbol_path, const std::string& params_path,
                              std::vector<InputSpec> inputs);
  ~Predictor();

  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;
  Predictor(Predictor&& other) noexcept;
  Predictor& operator=(Predictor&& other) noexcept;

  /// Copies `count` floats into input `name`; count must equal the input's declared size.
  void set_input(const std::string& name, const float* data, std::size_t count);
  void forward();
  std::vector<uint32_t> output_shape(uint32_t index = 0) const;
  std::vector<float> output(uint32_t index = 0) const;

  const std::vector<InputSpec>& inputs() const { return inputs_; }

 private:
  void reset() noexcept;
  void* handle_ = nullptr;  // PredictorHandle
  std::vector<InputSpec> inputs_;
};

/// Stops MXNet's engine threads before static destructors run (what Python does at exit).
/// Create one in main() before the first Predictor; without it, process exit after INT8
/// inference was seen to hang or crash inside the engine's worker threads.
class EngineShutdownGuard {
 public:
  EngineShutdownGuard() = default;
  ~EngineShutdownGuard();
  EngineShutdownGuard(const EngineShutdownGuard&) = delete;
  EngineShutdownGuard& operator=(const EngineShutdownGuard&) = delete;
};

/// Reads a whole file into a string (binary); throws Error naming the path.
std::string read_file(const std::string& path);

}  // namespace emotion_mx
