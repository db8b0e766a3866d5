#pragma once
// The Whisper log-mel front end (emotion_mx/features/whisper_frontend.py, which uses librosa),
// reimplemented without a third-party dependency so the C++ wrapper takes raw audio:
//   periodic Hann window of n_fft samples every hop_length samples, centred frames with
//   reflect padding (the last frame dropped: T = len / hop), power spectrum, Slaney mel
//   filterbank (librosa.filters.mel(norm="slaney", htk=False)), log10 clamped at log_floor,
//   floored at (max - dynamic_range) over the whole clip, then (x + offset) / scale.
// The constants come from the exported model's sidecar ("frontend": {"audio": {...}}).
#include <complex>
#include <cstddef>
#include <string>
#include <vector>

#include "emotion_mx/error.h"

namespace emotion_mx {

namespace json {
class Value;
}

struct WhisperFrontendConfig {
  int sample_rate = 0;
  int n_fft = 0;
  int hop_length = 0;
  int n_mels = 0;
  double log_floor = 0;
  double dynamic_range = 0;
  double offset = 0;
  double scale = 0;

  /// From the sidecar's frontend.audio object; throws Error for another kind, a mel_norm other
  /// than "slaney" or an implausible constant.
  static WhisperFrontendConfig from_json(const json::Value& v);
};

/// A complex forward DFT of one fixed size by mixed-radix Cooley-Tukey (any size; radices 4, 2,
/// 3, 5, then any remaining prime by a plain DFT butterfly).  Whisper's n_fft is 400 = 4*4*5*5,
/// which a radix-2 FFT cannot do.
class Fft {
 public:
  explicit Fft(std::size_t n);
  /// out[k] = sum_j in[j] exp(-2 pi i j k / n); `in` and `out` must not alias.
  void forward(const std::complex<double>* in, std::complex<double>* out) const;
  std::size_t size() const { return n_; }

 private:
  void step(const std::complex<double>* in, std::complex<double>* out, std::size_t n,
            std::size_t stride, std::size_t level) const;
  std::size_t n_;
  std::vector<std::size_t> factors_;
  std::vector<std::complex<double>> twiddle_;  // exp(-2 pi i k / n), k < n
};

class WhisperFrontend {
 public:
  explicit WhisperFrontend(const WhisperFrontendConfig& config);

  /// (T, n_mels) row-major log-mel of a mono waveform at config.sample_rate, T = len / hop.
  /// Throws Error when the clip is shorter than n_fft / 2 + 1 samples.
  std::vector<float> logmel(const std::vector<float>& wave, std::size_t* frames) const;

  const WhisperFrontendConfig& config() const { return config_; }
  /// (n_mels, n_fft / 2 + 1) row-major filterbank, float32 values as librosa returns them.
  const std::vector<float>& mel_basis() const { return mel_; }

 private:
  WhisperFrontendConfig config_;
  Fft fft_;
  std::vector<double> window_;
  std::vector<float> mel_;
  std::vector<std::size_t> mel_begin_, mel_end_;  // non-zero bins of each mel band
};

/// Decoded WAV: samples averaged over channels to mono, in [-1, 1] (16-bit PCM / 32768, as
/// soundfile decodes it; IEEE float32 as stored).
struct WavAudio {
  int sample_rate = 0;
  int channels = 0;
  std::vector<float> samples;
};

/// Reads a RIFF/WAVE file: PCM 16-bit or IEEE float 32-bit (also WAVE_FORMAT_EXTENSIBLE), any
/// channel count.  Throws Error naming the file for anything else (8/24-bit PCM, compressed
/// formats, a truncated or malformed file), with what to do about it.
WavAudio read_wav(const std::string& path);

}  // namespace emotion_mx
