// emotion_predict: run an exported emotion_mx model (fp32 or INT8) on .npy inputs, or on raw
// WAV audio for models whose sidecar names an audio front end (Whisper log-mel).
//
//   emotion_predict --model DIR --input audio=a.npy --input audio_mask=m.npy ...
//                   [--bench N] [--threads N]
//   emotion_predict --model DIR --audio clip.wav [--audio clip2.wav ...] [--input text=t.npy ...]
//                   [--dump-features feats.npy]
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
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "emotion_mx/model_dir.h"
#include "emotion_mx/npy.h"
#include "emotion_mx/predictor.h"
#include "emotion_mx/whisper_frontend.h"

namespace {

using emotion_mx::Error;

constexpr const char* kUsage =
    "usage: emotion_predict --model DIR --input NAME=FILE.npy [--input ...] [--bench N] [--threads N]\n"
    "       emotion_predict --model DIR --audio CLIP.wav [--audio ...] [--input NAME=FILE.npy ...]\n"
    "  --model DIR        exported model directory (model.json, model-symbol.json, model-0000.params)\n"
    "  --input NAME=FILE  float32 C-order .npy for each model input named in DIR/model.json\n"
    "  --audio FILE.wav   raw audio (16-bit PCM or float32 WAV at the front end's rate; one batch row\n"
    "                     per file) for models whose model.json has frontend.audio: computes inputs\n"
    "                     audio and audio_mask; other modalities without --input are missing (zeros)\n"
    "  --dump-features F  with --audio: also write the computed audio input (B, T, n_mels) to F.npy\n"
    "  --bench N          also time N forward passes (after 3 warm-up runs); prints median and p95\n"
    "  --threads N        OpenMP threads for MXNet operators (sets OMP_NUM_THREADS)\n";

struct Options {
  std::string model;
  std::map<std::string, std::string> inputs;
  std::vector<std::string> audio;
  std::string dump_features;
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
    } else if (a == "--audio") {
      o.audio.push_back(value(a));
    } else if (a == "--dump-features") {
      o.dump_features = value(a);
    } else if (a == "--bench") {
      o.bench = parse_int(a, value(a));
    } else if (a == "--threads") {
      o.threads = parse_int(a, value(a));
    } else {
      throw UsageError("unknown argument '" + a + "' (see --help)");
    }
  }
  if (o.model.empty()) throw UsageError("--model DIR is required (see --help)");
  if (!o.audio.empty() && (o.inputs.count("audio") || o.inputs.count("audio_mask")))
    throw UsageError("--audio computes inputs audio and audio_mask: do not also pass them with --input");
  if (!o.dump_features.empty() && o.audio.empty()) throw UsageError("--dump-features needs --audio");
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

// Inputs "audio" (B, T, n_mels) and "audio_mask" (B, T) from decoded clips: the front end runs
// on each whole clip (its floor is max - dynamic_range over the clip), then the frames are cut
// or zero-padded to the model's T; the mask is 1 on the real frames.
std::map<std::string, emotion_mx::NpyArray> audio_inputs(const emotion_mx::WhisperFrontend& fe,
                                                         const std::vector<emotion_mx::WavAudio>& clips,
                                                         uint32_t model_frames,
                                                         std::vector<std::size_t>* clip_frames) {
  const uint32_t batch = static_cast<uint32_t>(clips.size());
  const uint32_t n_mels = static_cast<uint32_t>(fe.config().n_mels);
  emotion_mx::NpyArray audio, mask;
  audio.shape = {batch, model_frames, n_mels};
  mask.shape = {batch, model_frames};
  audio.data.assign(static_cast<std::size_t>(batch) * model_frames * n_mels, 0.0f);
  mask.data.assign(static_cast<std::size_t>(batch) * model_frames, 0.0f);
  if (clip_frames) clip_frames->clear();
  for (uint32_t b = 0; b < batch; ++b) {
    std::size_t frames = 0;
    const std::vector<float> mel = fe.logmel(clips[b].samples, &frames);  // (frames, n_mels)
    const std::size_t used = std::min<std::size_t>(frames, model_frames);
    std::copy(mel.begin(), mel.begin() + used * n_mels, audio.data.begin() + std::size_t(b) * model_frames * n_mels);
    std::fill(mask.data.begin() + std::size_t(b) * model_frames, mask.data.begin() + std::size_t(b) * model_frames + used, 1.0f);
    if (clip_frames) clip_frames->push_back(frames);
  }
  std::map<std::string, emotion_mx::NpyArray> out;
  out["audio"] = std::move(audio);
  out["audio_mask"] = std::move(mask);
  return out;
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

  // Raw audio: inputs audio and audio_mask through the sidecar's front end.
  std::map<std::string, emotion_mx::NpyArray> computed;
  std::vector<emotion_mx::WavAudio> clips;
  std::vector<std::size_t> clip_frames;
  std::optional<emotion_mx::WhisperFrontend> frontend;
  uint32_t model_frames = 0;
  if (!opt.audio.empty()) {
    if (!model.audio_frontend)
      throw Error(opt.model + ": the model has no raw-audio front end (model.json has no frontend.audio; only "
                  "models on Whisper log-mel features have one): pass its audio features with "
                  "--input audio=FILE.npy --input audio_mask=FILE.npy");
    const auto& cfg = *model.audio_frontend;
    for (const auto& path : opt.audio) {
      auto clip = emotion_mx::read_wav(path);
      if (clip.sample_rate != cfg.sample_rate)
        throw Error(path + ": " + std::to_string(clip.sample_rate) + " Hz audio, the model's front end needs " +
                    std::to_string(cfg.sample_rate) + " Hz: resample to " + std::to_string(cfg.sample_rate) +
                    " Hz (e.g. ffmpeg -i " + path + " -ar " + std::to_string(cfg.sample_rate) + " out.wav)");
      if (cfg.max_seconds > 0) {  // the Python feature extraction cuts the waveform there first
        const auto limit = static_cast<std::size_t>(std::llround(cfg.max_seconds * cfg.sample_rate));
        if (clip.samples.size() > limit) clip.samples.resize(limit);
      }
      const std::size_t shortest = static_cast<std::size_t>(cfg.n_fft / 2 + 1);  // reflect padding needs it
      if (clip.samples.size() < shortest)
        throw Error(path + ": " + std::to_string(clip.samples.size()) + " samples are too short for the front end "
                    "(needs at least " + std::to_string(shortest) + ")");
      clips.push_back(std::move(clip));
    }
    for (const auto& spec : model.inputs)
      if (spec.name == "audio") model_frames = spec.shape[1];
    frontend.emplace(cfg);
    computed = audio_inputs(*frontend, clips, model_frames, &clip_frames);
    batch = static_cast<uint32_t>(clips.size());
    if (!opt.dump_features.empty()) {
      const auto& a = computed.at("audio");
      emotion_mx::save_npy(opt.dump_features, a.shape, a.data);
    }
  }
  // With --audio, a modality whose input and mask are both absent is missing: zeros, mask 0.
  auto absent_modality = [&](const std::string& name) {
    const std::string base = name.size() > 5 && name.compare(name.size() - 5, 5, "_mask") == 0
                                 ? name.substr(0, name.size() - 5) : name;
    return !opt.audio.empty() && !opt.inputs.count(base) && !opt.inputs.count(base + "_mask");
  };

  for (const auto& spec : model.inputs) {
    auto c = computed.find(spec.name);
    if (c != computed.end()) {
      shapes.push_back({spec.name, c->second.shape});
      arrays.push_back(std::move(c->second));
      continue;
    }
    auto it = opt.inputs.find(spec.name);
    if (it == opt.inputs.end() && absent_modality(spec.name)) {
      emotion_mx::NpyArray zeros;
      zeros.shape = spec.shape;
      zeros.shape[0] = batch;
      std::size_t n = 1;
      for (auto d : zeros.shape) n *= d;
      zeros.data.assign(n, 0.0f);
      shapes.push_back({spec.name, zeros.shape});
      arrays.push_back(std::move(zeros));
      continue;
    }
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

  // A row whose every modality mask is zero has no input at all: the model would still print
  // a label (its bias), so it is refused, as Python's predictor refuses an item without input.
  std::vector<std::size_t> masks;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    if (shapes[i].name.size() > 5 && shapes[i].name.compare(shapes[i].name.size() - 5, 5, "_mask") == 0)
      masks.push_back(i);
  for (uint32_t r = 0; !masks.empty() && r < batch; ++r) {
    bool present = false;
    for (std::size_t i : masks) {
      const std::size_t row = arrays[i].data.size() / batch;
      const float* m = arrays[i].data.data() + std::size_t(r) * row;
      present = present || std::any_of(m, m + row, [](float v) { return v != 0.0f; });
    }
    if (!present) {
      std::string names;
      for (std::size_t i : masks) names += (names.empty() ? "" : ", ") + shapes[i].name;
      throw Error("batch row " + std::to_string(r) + " has no input: every modality mask (" + names +
                  ") is all zero; give at least one modality with a mask of 1 on its real steps");
    }
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

  std::string latency, frontend_latency;
  if (opt.bench > 0 && frontend) {  // the front end alone, on every clip of the batch
    std::vector<double> ms;
    for (int i = 0; i < opt.bench; ++i) {
      auto s = std::chrono::steady_clock::now();
      audio_inputs(*frontend, clips, model_frames, nullptr);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    frontend_latency = ", \"frontend_median\": " + num(percentile(ms, 0.5));
  }
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
              ", \"create\": " + num(create_ms) + frontend_latency + "}";
  }

  std::string labels = "[";
  for (std::size_t i = 0; i < model.labels.size(); ++i) labels += (i ? ", " : "") + quote(model.labels[i]);
  labels += "]";
  std::string pred = "[";
  for (std::size_t i = 0; i < predicted.size(); ++i) pred += (i ? ", " : "") + quote(predicted[i]);
  pred += "]";
  std::string audio_json;
  if (!clips.empty()) {
    audio_json = ", \"audio\": [";
    for (std::size_t i = 0; i < clips.size(); ++i)
      audio_json += std::string(i ? ", " : "") + "{\"file\": " + quote(opt.audio[i]) + ", \"frames\": " +
                    std::to_string(clip_frames[i]) + ", \"used_frames\": " +
                    std::to_string(std::min<std::size_t>(clip_frames[i], model_frames)) + "}";
    audio_json += "]";
  }
  std::cout << "{\"model\": " << quote(opt.model) << ", \"precision\": " << quote(model.precision)
            << ", \"batch_size\": " << batch << ", \"labels\": " << labels
            << ", \"predicted\": " << pred
            << ", \"probabilities\": " << rows_json(probs, batch, classes)
            << ", \"logits\": " << rows_json(logits, batch, classes) << audio_json << latency << "}" << std::endl;
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
