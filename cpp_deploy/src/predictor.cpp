#include "emotion_mx/predictor.h"

#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <utility>

#include <mxnet/c_api.h>
#include <mxnet/c_predict_api.h>

namespace emotion_mx {
namespace {

// MXGetLastError() can hold a multi-line message with a stack trace: keep the first
// informative line so that the CLI prints exactly one line.
std::string last_error() {
  const char* raw = MXGetLastError();
  std::istringstream in(raw ? raw : "");
  std::string line, best;
  while (std::getline(in, line)) {
    if (line.empty() || line.rfind("Stack trace", 0) == 0 || line.rfind("Traceback", 0) == 0 ||
        line.find("  File \"") == 0)
      continue;
    best = line;
    // MXNet prefixes messages with "[hh:mm:ss] file.cc:123: "; the text after it is the message.
    break;
  }
  return best.empty() ? std::string("unknown MXNet error") : best;
}

void check(int rc, const char* what) {
  if (rc != 0) throw Error(std::string(what) + " failed: " + last_error());
}

}  // namespace

std::size_t InputSpec::size() const {
  std::size_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open " + path);
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw Error("cannot read " + path);
  return data;
}

Predictor::Predictor(const std::string& symbol_json, const std::string& params,
                     std::vector<InputSpec> inputs)
    : inputs_(std::move(inputs)) {
  if (inputs_.empty()) throw Error("a predictor needs at least one input");
  if (params.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error("parameter file is larger than the C predict API accepts (2 GiB)");
  std::vector<const char*> keys;
  std::vector<uint32_t> indptr{0};
  std::vector<uint32_t> dims;
  for (const auto& in : inputs_) {
    if (in.shape.empty()) throw Error("input '" + in.name + "' has an empty shape");
    keys.push_back(in.name.c_str());
    dims.insert(dims.end(), in.shape.begin(), in.shape.end());
    indptr.push_back(static_cast<uint32_t>(dims.size()));
  }
  PredictorHandle h = nullptr;
  check(MXPredCreate(symbol_json.c_str(), params.data(), static_cast<int>(params.size()),
                     /*dev_type=cpu*/ 1, /*dev_id*/ 0, static_cast<uint32_t>(keys.size()),
                     keys.data(), indptr.data(), dims.data(), &h),
        "MXPredCreate");
  handle_ = h;
}

Predictor Predictor::from_files(const std::string& symbol_path, const std::string& params_path,
                                std::vector<InputSpec> inputs) {
  return Predictor(read_file(symbol_path), read_file(params_path), std::move(inputs));
}

Predictor::~Predictor() { reset(); }

EngineShutdownGuard::~EngineShutdownGuard() { MXNotifyShutdown(); }

void Predictor::reset() noexcept {
  if (handle_ != nullptr) {
    MXPredFree(handle_);  // a failure here cannot be reported from a destructor
    handle_ = nullptr;
  }
}

Predictor::Predictor(Predictor&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), inputs_(std::move(other.inputs_)) {}

Predictor& Predictor::operator=(Predictor&& other) noexcept {
  if (this != &other) {
    reset();
    handle_ = std::exchange(other.handle_, nullptr);
    inputs_ = std::move(other.inputs_);
  }
  return *this;
}

void Predictor::set_input(const std::string& name, const float* data, std::size_t count) {
  if (handle_ == nullptr) throw Error("predictor was moved from");
  const InputSpec* spec = nullptr;
  for (const auto& in : inputs_)
    if (in.name == name) spec = &in;
  if (spec == nullptr) throw Error("model has no input named '" + name + "'");
  if (count != spec->size())
    throw Error("input '" + name + "' has " + std::to_string(count) + " values, expected " +
                std::to_string(spec->size()));
  check(MXPredSetInput(handle_, name.c_str(), data, static_cast<uint32_t>(count)),
        "MXPredSetInput");
}

void Predictor::forward() {
  if (handle_ == nullptr) throw Error("predictor was moved from");
  check(MXPredForward(handle_), "MXPredForward");
}

std::vector<uint32_t> Predictor::output_shape(uint32_t index) const {
  if (handle_ == nullptr) throw Error("predictor was moved from");
  uint32_t* data = nullptr;
  uint32_t ndim = 0;
  check(MXPredGetOutputShape(handle_, index, &data, &ndim), "MXPredGetOutputShape");
  return std::vector<uint32_t>(data, data + ndim);
}

std::vector<float> Predictor::output(uint32_t index) const {
  std::size_t n = 1;
  for (auto d : output_shape(index)) n *= d;
  std::vector<float> out(n);
  check(MXPredGetOutput(handle_, index, out.data(), static_cast<uint32_t>(n)), "MXPredGetOutput");
  return out;
}

}  // namespace emotion_mx
