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
  /// Decoded audio is cut to this many seconds before the front end (as the Python feature
  /// extraction does; 0: no limit).  Optional in the sidecar.
  double max_seconds = 0;
  /// Leading and trailing silence quieter than this many dB below the loudest frame is cut
  /// before the front end (librosa.effects.trim, as the Python audio.trim_db; 0: none).
  double trim_db = 0;

  /// From the sidecar's frontend.audio object; throws Error for another kind, a mel_norm other
  /// than "slaney" or an implausible constant.
  static WhisperFrontendConfig from_json(const json::Value& v);
};

/// A complex forward DFT of one fixed size by the mixed-radix Stockham algorithm (any size:
/// butterflies for radices 4, 2, 5, 3, a plain DFT butterfly for any other prime factor; one
/// pass per factor, natural order in and out).  Whisper's n_fft is 400 = 2^4 * 5^2, which a
/// radix-2 FFT cannot do.
class Fft {
 public:
  explicit Fft(std::size_t n);
  /// out[k] = sum_j in[j] exp(-2 pi i j k / n).  `work` is scratch of n values; `in` may be
  /// `work` or `out` only if it is not needed afterwards.
  void forward(const std::complex<double>* in, std::complex<double>* out, std::complex<double>* work) const;
  std::size_t size() const { return n_; }

 private:
  struct Stage {
    std::size_t radix, span;                      // span: size of the sub-transforms done so far
    std::vector<std::complex<double>> twiddle;    // [j * (radix - 1) + r - 1] = W_{span*radix}^{r (j % span)}
  };
  std::size_t n_;
  std::vector<Stage> stages_;
};

/// The DFT of a real sequence of even length n (bins 0..n/2) through one complex FFT of n/2
/// points (even samples as real part, odd samples as imaginary part) and a split step.
class RealFft {
 public:
  explicit RealFft(std::size_t n);
  /// out[k], k = 0..n/2, of in[0..n); uses the object's buffers (one object per thread).
  void forward(const double* in, std::complex<double>* out);
  std::size_t size() const { return n_; }

 private:
  std::size_t n_;
  Fft half_;
  std::vector<std::complex<double>> packed_, spec_, work_, twiddle_;  // twiddle_[k] = exp(-2 pi i k / n)
};

class WhisperFrontend {
 public:
  explicit WhisperFrontend(const WhisperFrontendConfig& config);

  /// (T, n_mels) row-major log-mel of a mono waveform at config.sample_rate, T = len / hop.
  /// Throws Error when the clip is shorter than n_fft / 2 + 1 samples.
  std::vector<float> logmel(const std::vector<float>& wave, std::size_t* frames) const;
  /// `wave` without its leading and trailing silence (config trim_db; unchanged when 0).
  std::vector<float> trim(const std::vector<float>& wave) const;

  const WhisperFrontendConfig& config() const { return config_; }
  /// (n_mels, n_fft / 2 + 1) row-major filterbank, float32 values as librosa returns them.
  const std::vector<float>& mel_basis() const { return mel_; }

 private:
  WhisperFrontendConfig config_;
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
