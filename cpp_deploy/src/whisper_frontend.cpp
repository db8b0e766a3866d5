#include "emotion_mx/whisper_frontend.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "emotion_mx/json.h"
#include "emotion_mx/predictor.h"  // read_file

// Hand-written rather than a library: the wrapper's only dependency is MXNet (mobile and edge
// builds link nothing else), and the front end needs just one FFT size and one filterbank.
// Rounding follows librosa's: the window and the FFT are float64, the spectrum is stored as
// complex64, the power, the filterbank, the mel energies, the log and the floor are float32
// (sums in double).  Measured against whisper_logmel: max |diff| 1.2e-7, one float32 ulp
// (benchmarks/cpp_frontend.py).

namespace emotion_mx {
namespace {

constexpr double kPi = 3.14159265358979323846;

int int_field(const json::Value& v, const std::string& key, int lo, int hi) {
  double d = v.at(key).number("frontend.audio." + key);
  if (d != std::floor(d) || d < lo || d > hi)
    throw Error("frontend.audio." + key + " must be an integer in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
  return static_cast<int>(d);
}

// librosa.hz_to_mel / mel_to_hz with htk=False (Slaney's Auditory Toolbox): linear below
// 1 kHz, logarithmic above.
constexpr double kFSp = 200.0 / 3;
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = kMinLogHz / kFSp;
double logstep() { return std::log(6.4) / 27.0; }

double hz_to_mel(double f) {
  if (f >= kMinLogHz) return kMinLogMel + std::log(f / kMinLogHz) / logstep();
  return f / kFSp;
}

double mel_to_hz(double m) {
  if (m >= kMinLogMel) return kMinLogHz * std::exp(logstep() * (m - kMinLogMel));
  return kFSp * m;
}

uint16_t u16(const std::string& b, std::size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(b[at]) |
                               (static_cast<unsigned char>(b[at + 1]) << 8));
}

uint32_t u32(const std::string& b, std::size_t at) {
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(b[at + k]);
  return v;
}

}  // namespace

// ---- configuration ------------------------------------------------------------------------

WhisperFrontendConfig WhisperFrontendConfig::from_json(const json::Value& v) {
  const std::string kind = v.at("kind").string("frontend.audio.kind");
  if (kind != "whisper_logmel")
    throw Error("frontend.audio.kind '" + kind + "' is not supported (only 'whisper_logmel')");
  if (v.contains("mel_norm") && v.at("mel_norm").string("frontend.audio.mel_norm") != "slaney")
    throw Error("frontend.audio.mel_norm '" + v.at("mel_norm").string() +
                "' is not supported (only 'slaney')");
  WhisperFrontendConfig c;
  c.sample_rate = int_field(v, "sample_rate", 1, 1000000);
  c.n_fft = int_field(v, "n_fft", 2, 65536);
  if (c.n_fft % 2 != 0) throw Error("frontend.audio.n_fft must be even");
  c.hop_length = int_field(v, "hop_length", 1, 65536);
  c.n_mels = int_field(v, "n_mels", 1, 1024);
  c.log_floor = v.at("log_floor").number("frontend.audio.log_floor");
  c.dynamic_range = v.at("dynamic_range").number("frontend.audio.dynamic_range");
  c.offset = v.at("offset").number("frontend.audio.offset");
  c.scale = v.at("scale").number("frontend.audio.scale");
  if (!(c.log_floor > 0) || !(c.dynamic_range > 0) || !(c.scale != 0) || !std::isfinite(c.offset))
    throw Error("frontend.audio needs log_floor > 0, dynamic_range > 0, scale != 0");
  if (v.contains("max_seconds") && !v.at("max_seconds").is_null()) {
    c.max_seconds = v.at("max_seconds").number("frontend.audio.max_seconds");
    if (!(c.max_seconds > 0) || c.max_seconds > 86400)
      throw Error("frontend.audio.max_seconds must be a positive number of seconds");
  }
  if (v.contains("trim_db") && !v.at("trim_db").is_null()) {
    c.trim_db = v.at("trim_db").number("frontend.audio.trim_db");
    if (!(c.trim_db > 0) || c.trim_db > 200) throw Error("frontend.audio.trim_db must be in (0, 200] dB");
  }
  return c;
}

// ---- FFT ----------------------------------------------------------------------------------

namespace {
// The plain product: std::complex's operator* also recovers infinities (C99 Annex G, a branch
// and an out-of-line call per product); inputs here are finite.
inline std::complex<double> cmul(std::complex<double> a, std::complex<double> b) {
  return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}
}  // namespace

Fft::Fft(std::size_t n) : n_(n) {
  if (n == 0) throw Error("FFT size must be positive");
  std::vector<std::size_t> factors;
  std::size_t m = n;
  for (std::size_t p : {4, 2, 5, 3})
    while (m % p == 0) {
      factors.push_back(p);
      m /= p;
    }
  for (std::size_t p = 7; m > 1; p += 2)
    while (m % p == 0) {
      factors.push_back(p);
      m /= p;
    }
  std::size_t span = 1;
  for (std::size_t p : factors) {
    Stage st{p, span, {}};
    const std::size_t groups = n / p;
    st.twiddle.resize(groups * (p - 1));
    for (std::size_t j = 0; j < groups; ++j)
      for (std::size_t r = 1; r < p; ++r) {
        const double a = -2.0 * kPi * static_cast<double>(r * (j % span)) / static_cast<double>(span * p);
        st.twiddle[j * (p - 1) + r - 1] = {std::cos(a), std::sin(a)};
      }
    stages_.push_back(std::move(st));
    span *= p;
  }
}

// Stockham, decimation in time: stage (radix p, span s) reads x[j + r n/p], r < p, twiddles them
// by W_{s p}^{r (j mod s)}, takes their size-p DFT and writes it to y[(j / s) s p + j mod s + q s].
void Fft::forward(const std::complex<double>* in, std::complex<double>* out, std::complex<double>* work) const {
  using cd = std::complex<double>;
  auto neg_i = [](cd z) { return cd(z.imag(), -z.real()); };  // z * (-i)
  if (stages_.empty()) {
    out[0] = in[0];
    return;
  }
  // ping-pong so that the last stage writes `out`
  const cd* x = in;
  cd* y = (stages_.size() % 2 == 1) ? out : work;
  for (const Stage& st : stages_) {
    const std::size_t p = st.radix, s = st.span, groups = n_ / p;
    const cd* tw = st.twiddle.data();
    for (std::size_t j = 0; j < groups; ++j, tw += p - 1) {
      cd* o = y + (j / s) * s * p + j % s;
      if (p == 2) {
        const cd a = x[j], b = cmul(x[j + groups], tw[0]);
        o[0] = a + b;
        o[s] = a - b;
      } else if (p == 4) {
        const cd x0 = x[j], x1 = cmul(x[j + groups], tw[0]), x2 = cmul(x[j + 2 * groups], tw[1]),
                 x3 = cmul(x[j + 3 * groups], tw[2]);
        const cd a = x0 + x2, b = x0 - x2, c = x1 + x3, d = neg_i(x1 - x3);
        o[0] = a + c;
        o[s] = b + d;
        o[2 * s] = a - c;
        o[3 * s] = b - d;
      } else if (p == 5) {
        constexpr double c1 = 0.30901699437494742, c2 = -0.80901699437494742;  // cos(2pi/5), cos(4pi/5)
        constexpr double s1 = 0.95105651629515357, s2 = 0.58778525229247314;   // sin(2pi/5), sin(4pi/5)
        const cd x0 = x[j], x1 = cmul(x[j + groups], tw[0]), x2 = cmul(x[j + 2 * groups], tw[1]),
                 x3 = cmul(x[j + 3 * groups], tw[2]), x4 = cmul(x[j + 4 * groups], tw[3]);
        const cd t1 = x1 + x4, t2 = x2 + x3, t3 = x1 - x4, t4 = x2 - x3;
        const cd a1 = x0 + c1 * t1 + c2 * t2, a2 = x0 + c2 * t1 + c1 * t2;
        const cd b1 = neg_i(s1 * t3 + s2 * t4), b2 = neg_i(s2 * t3 - s1 * t4);
        o[0] = x0 + t1 + t2;
        o[s] = a1 + b1;
        o[4 * s] = a1 - b1;
        o[2 * s] = a2 + b2;
        o[3 * s] = a2 - b2;
      } else {  // radix 3 and any other prime: a plain DFT butterfly
        cd v[64];
        std::vector<cd> big;
        cd* t = v;
        if (p > 64) {
          big.resize(p);
          t = big.data();
        }
        t[0] = x[j];
        for (std::size_t r = 1; r < p; ++r) t[r] = cmul(x[j + r * groups], tw[r - 1]);
        for (std::size_t q = 0; q < p; ++q) {
          cd acc = t[0];
          for (std::size_t r = 1; r < p; ++r) {
            const double a = -2.0 * kPi * static_cast<double>((r * q) % p) / static_cast<double>(p);
            acc += cmul(t[r], cd(std::cos(a), std::sin(a)));
          }
          o[q * s] = acc;
        }
      }
    }
    x = y;
    y = (y == out) ? work : out;
  }
}

RealFft::RealFft(std::size_t n)
    : n_(n), half_(n / 2), packed_(n / 2), spec_(n / 2), work_(n / 2), twiddle_(n / 2 + 1) {
  if (n < 2 || n % 2 != 0) throw Error("a real FFT needs an even size >= 2");
  for (std::size_t k = 0; k <= n / 2; ++k) {
    double a = -2.0 * kPi * static_cast<double>(k) / static_cast<double>(n);
    twiddle_[k] = {std::cos(a), std::sin(a)};
  }
}

void RealFft::forward(const double* in, std::complex<double>* out) {
  const std::size_t h = n_ / 2;
  for (std::size_t j = 0; j < h; ++j) packed_[j] = {in[2 * j], in[2 * j + 1]};
  half_.forward(packed_.data(), spec_.data(), work_.data());
  // E[k] = (Z[k] + conj Z[h-k]) / 2 (even samples), O[k] = (Z[k] - conj Z[h-k]) / 2i (odd ones),
  // X[k] = E[k] + exp(-2 pi i k / n) O[k]; in scalars (the std::complex form of this loop made
  // the whole real FFT ~2x slower on the development machine)
  const double* z = reinterpret_cast<const double*>(spec_.data());
  const double* w = reinterpret_cast<const double*>(twiddle_.data());
  double* x = reinterpret_cast<double*>(out);
  for (std::size_t k = 0; k <= h; ++k) {
    const std::size_t a = k == h ? 0 : k, b = k == 0 ? 0 : h - k;
    const double zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * b], ci = -z[2 * b + 1];
    const double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);
    const double dr = 0.5 * (zr - cr), di = 0.5 * (zi - ci);
    const double orr = di, oi = -dr;  // d / i
    const double wr = w[2 * k], wi = w[2 * k + 1];
    x[2 * k] = er + wr * orr - wi * oi;
    x[2 * k + 1] = ei + wr * oi + wi * orr;
  }
}

// ---- front end ----------------------------------------------------------------------------

WhisperFrontend::WhisperFrontend(const WhisperFrontendConfig& config)
    : config_(config) {
  if (config.n_fft % 2 != 0) throw Error("frontend.audio.n_fft must be even");
  const int n_fft = config.n_fft, n_mels = config.n_mels;
  const int bins = n_fft / 2 + 1;
  // scipy.signal.get_window("hann", n_fft, fftbins=True): the periodic Hann window
  window_.resize(n_fft);
  for (int j = 0; j < n_fft; ++j) window_[j] = 0.5 - 0.5 * std::cos(2.0 * kPi * j / n_fft);

  // librosa.filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2, htk=False, norm="slaney")
  const double sr = config.sample_rate;
  std::vector<double> fftfreqs(bins);  // np.fft.rfftfreq(n_fft, 1/sr)
  const double val = 1.0 / (n_fft * (1.0 / sr));
  for (int k = 0; k < bins; ++k) fftfreqs[k] = k * val;
  const int n_pts = n_mels + 2;  // mel_frequencies(n_mels + 2): np.linspace over mels, then Hz
  const double min_mel = hz_to_mel(0.0), max_mel = hz_to_mel(sr / 2);
  const double mel_step = (max_mel - min_mel) / (n_pts - 1);
  std::vector<double> mel_f(n_pts);
  for (int i = 0; i < n_pts; ++i)
    mel_f[i] = mel_to_hz(i == n_pts - 1 ? max_mel : i * mel_step + min_mel);
  mel_.assign(static_cast<std::size_t>(n_mels) * bins, 0.0f);
  mel_begin_.assign(n_mels, 0);
  mel_end_.assign(n_mels, 0);
  for (int i = 0; i < n_mels; ++i) {
    const double fdiff_lo = mel_f[i + 1] - mel_f[i], fdiff_hi = mel_f[i + 2] - mel_f[i + 1];
    const double enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
    std::size_t begin = bins, end = 0;
    for (int k = 0; k < bins; ++k) {
      const double lower = -(mel_f[i] - fftfreqs[k]) / fdiff_lo;
      const double upper = (mel_f[i + 2] - fftfreqs[k]) / fdiff_hi;
      // float32 weights, then *= enorm computed in double and stored as float32 (librosa)
      const float w = static_cast<float>(std::max(0.0, std::min(lower, upper)));
      const float v = static_cast<float>(static_cast<double>(w) * enorm);
      mel_[static_cast<std::size_t>(i) * bins + k] = v;
      if (v != 0.0f) {
        begin = std::min<std::size_t>(begin, k);
        end = static_cast<std::size_t>(k) + 1;
      }
    }
    // an empty band (librosa only warns) sums nothing: its output is log_floor, as in librosa
    mel_begin_[i] = end == 0 ? 0 : begin;
    mel_end_[i] = end;
  }
}

std::vector<float> WhisperFrontend::trim(const std::vector<float>& wave) const {
  // librosa.effects.trim(y, top_db, frame_length=2048, hop_length=512): the mean power of
  // zero-padded centred frames, in dB below the loudest frame; samples from the first to the
  // end of the last frame above -top_db are kept (none: an empty clip)
  if (!(config_.trim_db > 0)) return wave;
  const long long frame = 2048, hop = 512, n = static_cast<long long>(wave.size());
  const long long count = 1 + n / hop;   // librosa.util.frame over n + frame samples (pad frame/2 each side)
  std::vector<double> power(static_cast<std::size_t>(count), 0.0);
  for (long long t = 0; t < count; ++t) {
    double s = 0.0;
    for (long long j = t * hop - frame / 2, e = j + frame; j < e; ++j)
      if (j >= 0 && j < n) s += static_cast<double>(wave[j]) * wave[j];
    power[t] = s / frame;
  }
  const double top = std::max(*std::max_element(power.begin(), power.end()), 1e-10);
  long long first = -1, last = -1;
  for (long long t = 0; t < count; ++t)
    if (10.0 * std::log10(std::max(power[t], 1e-10) / top) > -config_.trim_db) {
      if (first < 0) first = t;
      last = t;
    }
  if (first < 0) return {};
  const auto begin = static_cast<std::size_t>(first * hop);
  const auto end = static_cast<std::size_t>(std::min(n, (last + 1) * hop));
  return std::vector<float>(wave.begin() + begin, wave.begin() + end);
}

std::vector<float> WhisperFrontend::logmel(const std::vector<float>& input, std::size_t* frames) const {
  const std::vector<float> trimmed = config_.trim_db > 0 ? trim(input) : std::vector<float>();
  const std::vector<float>& wave = config_.trim_db > 0 ? trimmed : input;
  const std::size_t n_fft = config_.n_fft, hop = config_.hop_length, n_mels = config_.n_mels;
  const std::size_t pad = n_fft / 2, bins = n_fft / 2 + 1, len = wave.size();
  if (len < pad + 1)
    throw Error("audio of " + std::to_string(len) + " samples is too short for the front end (needs at least " +
                std::to_string(pad + 1) + " samples)");
  // librosa.stft(center=True): 1 + (len + 2 pad - n_fft) / hop frames; Whisper drops the last
  const std::size_t T = (len + 2 * pad - n_fft) / hop;
  if (frames) *frames = T;
  std::vector<float> out(T * n_mels);
  if (T == 0) return out;

  RealFft fft(n_fft);  // per call: logmel() stays const and thread-safe; the plan costs ~n sin/cos
  std::vector<double> in(n_fft);
  std::vector<std::complex<double>> spec(bins);
  std::vector<float> power(bins);
  const float log_floor = static_cast<float>(config_.log_floor);
  const long long n = static_cast<long long>(len), last = 2 * (n - 1);
  for (std::size_t t = 0; t < T; ++t) {
    const long long start = static_cast<long long>(t * hop) - static_cast<long long>(pad);
    for (std::size_t j = 0; j < n_fft; ++j) {
      long long i = start + static_cast<long long>(j);
      if (i < 0) i = -i;                 // np.pad(mode="reflect"): mirrored, edge not repeated
      else if (i >= n) i = last - i;
      // the float32 waveform times the float64 window, as numpy promotes it
      in[j] = static_cast<double>(wave[static_cast<std::size_t>(i)]) * window_[j];
    }
    fft.forward(in.data(), spec.data());
    for (std::size_t k = 0; k < bins; ++k) {  // stored as complex64, |X|^2 as float32
      const double re = static_cast<float>(spec[k].real()), im = static_cast<float>(spec[k].imag());
      power[k] = static_cast<float>(re * re + im * im);
    }
    float* row = &out[t * n_mels];
    for (std::size_t m = 0; m < n_mels; ++m) {
      const float* w = &mel_[m * bins];
      double s = 0.0;
      for (std::size_t k = mel_begin_[m]; k < mel_end_[m]; ++k) s += static_cast<double>(w[k]) * power[k];
      const float mel = static_cast<float>(s);
      row[m] = std::log10(std::max(mel, log_floor));  // float32, as np.log10 of a float32 array
    }
  }
  const float top = *std::max_element(out.begin(), out.end());
  const float floor = top - static_cast<float>(config_.dynamic_range);
  const float offset = static_cast<float>(config_.offset), scale = static_cast<float>(config_.scale);
  for (auto& x : out) x = (std::max(x, floor) + offset) / scale;
  return out;
}

// ---- WAV ----------------------------------------------------------------------------------

WavAudio read_wav(const std::string& path) {
  const std::string b = read_file(path);
  const std::string convert =
      "; convert it to 16-bit PCM WAV, e.g. ffmpeg -i " + path + " -c:a pcm_s16le out.wav";
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) {
    if (b.size() >= 4 && (b.compare(0, 4, "RIFX") == 0 || b.compare(0, 4, "RF64") == 0))
      throw Error(path + ": " + b.substr(0, 4) + " WAV is not supported" + convert);
    throw Error(path + ": not a WAV file (no RIFF/WAVE header): the C++ wrapper reads WAV only" + convert);
  }
  std::size_t at = 12;
  bool have_fmt = false;
  unsigned tag = 0, channels = 0, bits = 0;
  uint32_t rate = 0;
  for (;;) {
    if (at + 8 > b.size())
      throw Error(path + ": truncated WAV: " + (have_fmt ? "no data chunk" : "no fmt chunk") +
                  " before the end of the file" + convert);
    const std::string id = b.substr(at, 4);
    const uint32_t size = u32(b, at + 4);
    const std::size_t body = at + 8;
    if (id == "fmt ") {
      if (size < 16 || body + size > b.size()) throw Error(path + ": truncated or malformed WAV fmt chunk" + convert);
      tag = u16(b, body);
      channels = u16(b, body + 2);
      rate = u32(b, body + 4);
      bits = u16(b, body + 14);
      if (tag == 0xFFFE) {  // WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        if (size < 40) throw Error(path + ": malformed WAVE_FORMAT_EXTENSIBLE fmt chunk" + convert);
        tag = u16(b, body + 24);
      }
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) throw Error(path + ": malformed WAV: data chunk before the fmt chunk" + convert);
      if (body + size > b.size())
        throw Error(path + ": truncated WAV: the data chunk claims " + std::to_string(size) + " bytes, the file holds " +
                    std::to_string(b.size() - body) + convert);
      if (channels == 0 || rate == 0) throw Error(path + ": WAV header claims " + std::to_string(channels) +
                                                  " channels at " + std::to_string(rate) + " Hz" + convert);
      const bool pcm16 = tag == 1 && bits == 16, f32 = tag == 3 && bits == 32;
      if (!pcm16 && !f32) {
        std::string what;
        if (tag == 1) what = std::to_string(bits) + "-bit PCM";
        else if (tag == 3) what = std::to_string(bits) + "-bit float";
        else {
          char hex[16];
          std::snprintf(hex, sizeof hex, "0x%04x", tag);
          what = std::string("format tag ") + hex + " (compressed or non-PCM)";
        }
        throw Error(path + ": " + what + " WAV is not supported (only 16-bit PCM and 32-bit float)" + convert);
      }
      const std::size_t frame_bytes = static_cast<std::size_t>(channels) * bits / 8;
      const std::size_t count = size / frame_bytes;  // a partial last frame is ignored, as libsndfile does
      if (count == 0) throw Error(path + ": WAV holds no samples");
      WavAudio w;
      w.sample_rate = static_cast<int>(rate);
      w.channels = static_cast<int>(channels);
      w.samples.resize(count);
      const char* p = b.data() + body;
      for (std::size_t f = 0; f < count; ++f) {
        float sum = 0.0f;
        for (unsigned c = 0; c < channels; ++c) {
          const char* s = p + (f * channels + c) * (bits / 8);
          float x;
          if (pcm16) {
            int16_t v;
            v = static_cast<int16_t>(u16(b, static_cast<std::size_t>(s - b.data())));
            x = static_cast<float>(v) / 32768.0f;
          } else {
            const uint32_t bits32 = u32(b, static_cast<std::size_t>(s - b.data()));  // little-endian file
            std::memcpy(&x, &bits32, 4);
            if (!std::isfinite(x))
              throw Error(path + ": holds NaN or inf samples at frame " + std::to_string(f));
          }
          sum += x;
        }
        w.samples[f] = channels == 1 ? sum : sum / static_cast<float>(channels);
      }
      return w;
    }
    if (body + size + (size & 1u) > b.size() && id != "data")
      throw Error(path + ": truncated WAV: chunk '" + id + "' runs past the end of the file" + convert);
    at = body + size + (size & 1u);  // chunks are word-aligned
  }
}

}  // namespace emotion_mx
