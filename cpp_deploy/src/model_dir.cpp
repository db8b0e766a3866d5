#include "emotion_mx/model_dir.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "emotion_mx/json.h"

namespace emotion_mx {
namespace {

// format 2 changed only "features" (not read here), so both are accepted
constexpr const char* kFormat = "emotion_mx.exported/2";
constexpr const char* kFormatV1 = "emotion_mx.exported/1";

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// A file the sidecar names must stay inside the model folder after every symlink is followed
// (a model folder from someone else is untrusted): the check emotion_mx.artifacts.check_sidecar
// makes in Python.
void check_inside(const std::string& dir, const json::Value& doc, const std::string& key) {
  if (!doc.contains(key) || doc.at(key).is_null()) return;
  const json::Value& v = doc.at(key);
  const std::string what = "field '" + key + "' names ";
  if (!v.is_string() || v.string().empty() || v.string().find('\0') != std::string::npos)
    throw Error(what + "no usable file name; the file is damaged or not from emotion_mx");
  std::error_code ec;
  const auto root = std::filesystem::weakly_canonical(std::filesystem::absolute(dir), ec);
  if (ec) throw Error("cannot resolve the model folder " + dir + ": " + ec.message());
  const auto path = std::filesystem::weakly_canonical(root / v.string(), ec);
  auto r = root.begin(), p = path.begin();
  for (; !ec && r != root.end() && p != path.end() && *r == *p; ++r, ++p) {}
  if (ec || r != root.end())
    throw Error(what + "'" + v.string() + "', which is outside the model folder (symlinks followed); "
                "the file is damaged or not from emotion_mx");
}

std::vector<std::string> read_modalities(const json::Value& doc) {
  static const std::vector<std::string> known{"audio", "text", "video"};
  const char* bad = "field 'modalities' must be a non-empty list of audio, text, video; the file is damaged "
                    "or not from emotion_mx";
  if (!doc.contains("modalities") || !doc.at("modalities").is_array()) throw Error(bad);
  std::vector<std::string> out;
  for (const auto& m : doc.at("modalities").array("modalities")) {
    if (!m.is_string() || std::find(known.begin(), known.end(), m.string()) == known.end() ||
        std::find(out.begin(), out.end(), m.string()) != out.end())
      throw Error(bad);
    out.push_back(m.string());
  }
  if (out.empty()) throw Error(bad);
  return out;
}

uint32_t dim(const json::Value& v, const std::string& what) {
  double d = v.number(what);
  if (d < 1 || d != std::floor(d) || d > 4294967295.0) throw Error(what + " must be a positive integer");
  return static_cast<uint32_t>(d);
}

}  // namespace

ModelDir ModelDir::open(const std::string& dir) {
  const std::string sidecar_path = join(dir, "model.json");
  json::Value doc;
  try {
    doc = json::parse(read_file(sidecar_path));
  } catch (const Error& e) {
    throw Error(sidecar_path + ": " + e.what());
  }
  try {
    const std::string format = doc.contains("format") ? doc.at("format").string("format") : "";
    if (format != kFormat && format != kFormatV1)
      throw Error(std::string("not an exported-model sidecar (expected format ") + kFormat +
                  "); export the run with tools/export.py");
    ModelDir m;
    m.path = dir;
    m.precision = doc.contains("precision") ? doc.at("precision").string("precision") : "fp32";
    m.modalities = read_modalities(doc);
    for (const char* key : {"vocab", "symbol_file", "params_file"}) check_inside(dir, doc, key);
    for (const auto& l : doc.at("labels").array("labels")) m.labels.push_back(l.string("label"));
    for (const auto& in : doc.at("inputs").array("inputs")) {
      InputSpec spec;
      spec.name = in.at("name").string("input name");
      if (in.contains("dtype") && in.at("dtype").string("dtype") != "float32")
        throw Error("input '" + spec.name + "' has dtype " + in.at("dtype").string() +
                    "; only float32 inputs are supported");
      for (const auto& d : in.at("shape").array("input shape"))
        spec.shape.push_back(dim(d, "shape of '" + spec.name + "'"));
      if (spec.shape.empty()) throw Error("input '" + spec.name + "' has an empty shape");
      m.inputs.push_back(std::move(spec));
    }
    if (m.inputs.empty()) throw Error("no inputs listed");
    if (doc.contains("frontend") && !doc.at("frontend").is_null() && doc.at("frontend").contains("audio")) {
      m.audio_frontend = WhisperFrontendConfig::from_json(doc.at("frontend").at("audio"));
      auto audio = std::find_if(m.inputs.begin(), m.inputs.end(), [](const InputSpec& s) { return s.name == "audio"; });
      if (audio == m.inputs.end() || audio->shape.size() != 3 ||
          audio->shape[2] != static_cast<uint32_t>(m.audio_frontend->n_mels))
        throw Error("frontend.audio needs an input 'audio' of shape [B, T, " +
                    std::to_string(m.audio_frontend->n_mels) + "]");
    }
    m.symbol_file = join(dir, doc.contains("symbol_file") ? doc.at("symbol_file").string() : "model-symbol.json");
    m.params_file = join(dir, doc.contains("params_file") ? doc.at("params_file").string() : "model-0000.params");
    return m;
  } catch (const Error& e) {
    throw Error(sidecar_path + ": " + e.what());
  }
}

Predictor ModelDir::make_predictor(const std::vector<InputSpec>& shapes) const {
  return Predictor::from_files(symbol_file, params_file, shapes);
}

}  // namespace emotion_mx
