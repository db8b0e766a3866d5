// emotion_predict: run an exported emotion_mx model (fp32 or INT8) on .npy inputs.
//
//   emotion_predict --model DIR --input audio=a.npy --input audio_mask=m.npy ...
//                   [--bench N] [--threads N]
//
// Prints one JSON object on stdout: labels, logits, class probabilities, predicted labels and,
// with --bench, forward latency (median, p95).  Any error: one "error: ..." line on stderr and
// exit code 2.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "emotion_mx/model_dir.h"
#include "emotion_mx/npy.h"
#include "emotion_mx/predictor.h"

namespace {

using emotion_mx::Error;

constexpr const char* kUsage =
    "usage: emotion_predict --model DIR --input NAME=FILE.npy [--input ...] [--bench N] [--threads N]\n"
    "  --model DIR        exported model directory (model.json, model-symbol.json, model-0000.params)\n"
    "  --input NAME=FILE  float32 C-order .npy for each model input named in DIR/model.json\n"
    "  --bench N          also time N forward passes (after 3 warm-up runs); prints median and p95\n"
    "  --threads N        OpenMP threads for MXNet operators (sets OMP_NUM_THREADS)\n";

struct Options {
  std::string model;
  std::map<std::string, std::string> inputs;
  int bench = 0;
  int threads = 0;
};

class UsageError : public Error {
 public:
  using Error::Error;
};

int parse_int(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 1 || v > 1000000)
    throw UsageError(flag + " needs a positive integer, got '" + value + "'");
  return static_cast<int>(v);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= argc) throw UsageError(flag + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--model") {
      o.model = value(a);
    } else if (a == "--input") {
      std::string kv = value(a);
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == kv.size())
        throw UsageError("--input expects NAME=FILE.npy, got '" + kv + "'");
      std::string name = kv.substr(0, eq);
      if (o.inputs.count(name)) throw UsageError("input '" + name + "' given twice");
      o.inputs[name] = kv.substr(eq + 1);
    } else if (a == "--bench") {
      o.bench = parse_int(a, value(a));
    } else if (a == "--threads") {
      o.threads = parse_int(a, value(a));
    } else {
      throw UsageError("unknown argument '" + a + "' (see --help)");
    }
  }
  if (o.model.empty()) throw UsageError("--model DIR is required (see --help)");
  return o;
}

std::string shape_str(const std::vector<uint32_t>& s) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < s.size(); ++i) out << (i ? ", " : "") << s[i];
  out << ']';
  return out.str();
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string rows_json(const std::vector<float>& v, std::size_t rows, std::size_t cols) {
  std::string out = "[";
  for (std::size_t r = 0; r < rows; ++r) {
    out += r ? ", [" : "[";
    for (std::size_t c = 0; c < cols; ++c) out += (c ? ", " : "") + num(v[r * cols + c]);
    out += "]";
  }
  return out + "]";
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * (v.size() - 1);
  auto lo = static_cast<std::size_t>(std::floor(pos));
  auto hi = static_cast<std::size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

int run(const Options& opt) {
  if (opt.threads > 0) setenv("OMP_NUM_THREADS", std::to_string(opt.threads).c_str(), 1);
  setenv("MXNET_SUBGRAPH_VERBOSE", "0", 0);  // keep stderr for errors only

  const auto model = emotion_mx::ModelDir::open(opt.model);

  // Inputs: exactly the sidecar's names; shapes equal except the batch dimension.
  for (const auto& [name, file] : opt.inputs) {
    bool known = std::any_of(model.inputs.begin(), model.inputs.end(),
                             [&](const auto& s) { return s.name == name; });
    if (!known) {
      std::string names;
      for (const auto& s : model.inputs) names += (names.empty() ? "" : ", ") + s.name;
      throw Error("model has no input named '" + name + "' (inputs: " + names + ")");
    }
  }
  std::vector<emotion_mx::NpyArray> arrays;
  std::vector<emotion_mx::InputSpec> shapes;
  uint32_t batch = 0;
  for (const auto& spec : model.inputs) {
    auto it = opt.inputs.find(spec.name);
    if (it == opt.inputs.end())
      throw Error("missing input '" + spec.name + "': pass --input " + spec.name + "=FILE.npy");
    auto arr = emotion_mx::load_npy(it->second);
    bool ok = arr.shape.size() == spec.shape.size() && !arr.shape.empty() && arr.shape[0] > 0 &&
              std::equal(arr.shape.begin() + 1, arr.shape.end(), spec.shape.begin() + 1);
    if (!ok) {
      std::string expected = "[B";
      for (std::size_t d = 1; d < spec.shape.size(); ++d) expected += ", " + std::to_string(spec.shape[d]);
      throw Error(it->second + ": input '" + spec.name + "' has shape " + shape_str(arr.shape) +
                  ", model expects " + expected + "]");
    }
    if (batch == 0) batch = arr.shape[0];
    if (arr.shape[0] != batch)
      throw Error("inputs disagree on the batch size (" + std::to_string(batch) + " vs " +
                  std::to_string(arr.shape[0]) + " in " + it->second + ")");
    shapes.push_back({spec.name, arr.shape});
    arrays.push_back(std::move(arr));
  }

  auto t0 = std::chrono::steady_clock::now();
  auto predictor = model.make_predictor(shapes);
  double create_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  auto forward_once = [&]() {
    for (std::size_t i = 0; i < shapes.size(); ++i)
      predictor.set_input(shapes[i].name, arrays[i].data.data(), arrays[i].data.size());
    predictor.forward();
    return predictor.output(0);
  };
  std::vector<float> logits = forward_once();
  auto oshape = predictor.output_shape(0);
  if (oshape.size() != 2 || oshape[0] != batch)
    throw Error("model output has shape " + shape_str(oshape) + ", expected [B, num_classes]");
  const std::size_t classes = oshape[1];
  if (!model.labels.empty() && model.labels.size() != classes)
    throw Error("model.json lists " + std::to_string(model.labels.size()) + " labels but the model outputs " +
                std::to_string(classes) + " classes");

  std::vector<float> probs(logits.size());
  std::vector<std::string> predicted;
  for (std::size_t r = 0; r < batch; ++r) {
    const float* z = &logits[r * classes];
    float m = *std::max_element(z, z + classes);
    double sum = 0;
    for (std::size_t c = 0; c < classes; ++c) sum += std::exp(double(z[c]) - m);
    for (std::size_t c = 0; c < classes; ++c) probs[r * classes + c] = float(std::exp(double(z[c]) - m) / sum);
    std::size_t best = std::max_element(z, z + classes) - z;
    predicted.push_back(model.labels.empty() ? std::to_string(best) : model.labels[best]);
  }

  std::string latency;
  if (opt.bench > 0) {
    for (int i = 0; i < 3; ++i) forward_once();
    std::vector<double> ms;
    for (int i = 0; i < opt.bench; ++i) {
      auto s = std::chrono::steady_clock::now();
      forward_once();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    latency = ", \"latency_ms\": {\"runs\": " + std::to_string(opt.bench) + ", \"median\": " +
              num(percentile(ms, 0.5)) + ", \"p95\": " + num(percentile(ms, 0.95)) +
              ", \"create\": " + num(create_ms) + "}";
  }

  std::string labels = "[";
  for (std::size_t i = 0; i < model.labels.size(); ++i) labels += (i ? ", " : "") + quote(model.labels[i]);
  labels += "]";
  std::string pred = "[";
  for (std::size_t i = 0; i < predicted.size(); ++i) pred += (i ? ", " : "") + quote(predicted[i]);
  pred += "]";
  std::cout << "{\"model\": " << quote(opt.model) << ", \"precision\": " << quote(model.precision)
            << ", \"batch_size\": " << batch << ", \"labels\": " << labels
            << ", \"predicted\": " << pred
            << ", \"probabilities\": " << rows_json(probs, batch, classes)
            << ", \"logits\": " << rows_json(logits, batch, classes) << latency << "}" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  emotion_mx::EngineShutdownGuard engine;  // destroyed after every Predictor
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
