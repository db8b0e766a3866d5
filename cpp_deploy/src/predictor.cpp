#include "emotion_mx/predictor.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
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

std::string shape_str(const std::vector<uint32_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<std::string> copy_names(uint32_t n, const char** names) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < n; ++i) out.emplace_back(names[i]);
  return out;
}

// MXPredCreate silently leaves a parameter the file lacks uninitialised (parameters of another
// graph gave a uniform distribution printed as a normal result): check that every argument
// and auxiliary state of the graph is in the file, with the shape the graph infers for it.
void check_params_match(const std::string& symbol_json, const std::string& params,
                        const std::vector<InputSpec>& inputs) {
  SymbolHandle sym = nullptr;
  check(MXSymbolCreateFromJSON(symbol_json.c_str(), &sym), "reading the symbol");
  struct SymGuard { SymbolHandle h; ~SymGuard() { MXSymbolFree(h); } } sym_guard{sym};

  uint32_t n_loaded = 0, n_names = 0;
  NDArrayHandle* arrays = nullptr;
  const char** names = nullptr;
  check(MXNDArrayLoadFromBuffer(params.data(), params.size(), &n_loaded, &arrays, &n_names, &names),
        "MXPredCreate");
  std::map<std::string, std::vector<uint32_t>> file;
  for (uint32_t i = 0; i < n_loaded; ++i) {
    uint32_t ndim = 0;
    const uint32_t* dims = nullptr;
    int rc = MXNDArrayGetShape(arrays[i], &ndim, &dims);
    std::vector<uint32_t> shape;
    if (rc == 0) shape.assign(dims, dims + ndim);
    if (i < n_names) file[names[i]] = shape;
    MXNDArrayFree(arrays[i]);
  }

  uint32_t n = 0;
  const char** raw = nullptr;
  check(MXSymbolListArguments(sym, &n, &raw), "listing the graph's arguments");
  std::vector<std::string> args = copy_names(n, raw);
  check(MXSymbolListAuxiliaryStates(sym, &n, &raw), "listing the graph's auxiliary states");
  std::vector<std::string> aux = copy_names(n, raw);

  std::vector<const char*> keys;
  std::vector<uint32_t> indptr{0}, dims;
  for (const auto& in : inputs) {
    keys.push_back(in.name.c_str());
    dims.insert(dims.end(), in.shape.begin(), in.shape.end());
    indptr.push_back(static_cast<uint32_t>(dims.size()));
  }
  uint32_t in_n = 0, out_n = 0, aux_n = 0;
  const uint32_t *in_ndim = nullptr, *out_ndim = nullptr, *aux_ndim = nullptr;
  const uint32_t **in_data = nullptr, **out_data = nullptr, **aux_data = nullptr;
  int complete = 0;
  bool inferred = MXSymbolInferShape(sym, static_cast<uint32_t>(keys.size()), keys.data(), indptr.data(),
                                     dims.data(), &in_n, &in_ndim, &in_data, &out_n, &out_ndim,
                                     &out_data, &aux_n, &aux_ndim, &aux_data, &complete) == 0;

  auto is_input = [&](const std::string& name) {
    for (const auto& in : inputs)
      if (in.name == name) return true;
    return false;
  };
  auto expect = [&](const std::vector<std::string>& list, const char* prefix, uint32_t count,
                    const uint32_t* ndim, const uint32_t** data) {
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (is_input(list[i])) continue;
      const std::string key = std::string(prefix) + list[i];
      auto it = file.find(key);
      if (it == file.end())
        throw Error("the parameter file does not belong to this graph: it has no '" + key +
                    "' (export the symbol and parameters together)");
      if (inferred && i < count && ndim[i] > 0) {
        std::vector<uint32_t> want(data[i], data[i] + ndim[i]);
        // MXSymbolInferShape (legacy shapes) leaves a dim it could not infer at 0: a wildcard
        // (seen on the Whisper encoder-slot presets, whose Python inference is complete)
        bool match = want.size() == it->second.size();
        for (std::size_t d = 0; match && d < want.size(); ++d)
          match = want[d] == 0 || want[d] == it->second[d];
        if (!match)
          throw Error("the parameter file does not belong to this graph: '" + key + "' is " +
                      shape_str(it->second) + ", the graph expects " + shape_str(want));
      }
    }
  };
  expect(args, "arg:", in_n, in_ndim, in_data);
  expect(aux, "aux:", aux_n, aux_ndim, aux_data);
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
  check_params_match(symbol_json, params, inputs_);
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
  for (std::size_t i = 0; i < count; ++i)
    if (!std::isfinite(data[i]))
      throw Error("input '" + name + "' holds NaN or inf at element " + std::to_string(i) +
                  "; inputs must be finite");
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
