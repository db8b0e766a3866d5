"""Audio feature throughput on one core, as a multiple of real time, split by stage.

    .venv/bin/python benchmarks/audio_throughput.py --data /work/shared/data -n 100

Stages: decode (soundfile + soxr resampling to --sample-rate), log-mel + MFCC with deltas
(one STFT), prosody (RMS, ZCR, yin F0, voicing). "x realtime" = audio seconds / wall seconds.
``--pyin`` also times ``librosa.pyin`` on the same clips, the slower alternative for F0.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"          # one core; must happen before numpy/numba are imported

import argparse  # noqa: E402
import glob  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import librosa  # noqa: E402

from emotion_mx.features.audio import F0_MAX_HZ, F0_MIN_HZ, audio_features, load_audio  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("EMOTION_MX_DATA"),
                   help="shared data folder holding emodb/wav (default: $EMOTION_MX_DATA)")
    p.add_argument("-n", "--num-files", type=int, default=100, help="EmoDB files to process")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--pyin", action="store_true", help="also time librosa.pyin for comparison")
    args = p.parse_args()
    if not args.data:
        p.error("pass --data or set EMOTION_MX_DATA")
    return args


def main():
    args = parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "emodb", "wav", "*.wav")))[:args.num_files]
    if not files:
        sys.exit(f"no wav files under {os.path.join(args.data, 'emodb', 'wav')}")
    sr = args.sample_rate
    audio_features(load_audio(files[0], sr))          # warm-up: imports, caches, JIT

    timings = {"decode": 0.0, "logmel+mfcc": 0.0, "prosody": 0.0}
    if args.pyin:
        timings["pyin (alternative)"] = 0.0
    audio_seconds = 0.0
    for path in files:
        t0 = time.perf_counter()
        wave = load_audio(path, sr)
        t1 = time.perf_counter()
        audio_features(wave, sr, prosody=False)
        t2 = time.perf_counter()
        audio_features(wave, sr, prosody=True)
        t3 = time.perf_counter()
        timings["decode"] += t1 - t0
        timings["logmel+mfcc"] += t2 - t1
        timings["prosody"] += max(0.0, (t3 - t2) - (t2 - t1))  # full minus spectral part
        if args.pyin:
            librosa.pyin(wave, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sr, frame_length=1024,
                         hop_length=sr // 100)
            timings["pyin (alternative)"] += time.perf_counter() - t3
        audio_seconds += len(wave) / sr

    print(f"{len(files)} EmoDB files, {audio_seconds:.1f} s of audio at {sr} Hz, 1 thread")
    print(f"{'stage':<20} {'wall s':>8} {'ms/file':>8} {'x realtime':>11}")
    total = 0.0
    for stage, seconds in timings.items():
        if not stage.startswith("pyin"):
            total += seconds
        print(f"{stage:<20} {seconds:8.2f} {1000 * seconds / len(files):8.1f} "
              f"{audio_seconds / seconds:11.0f}")
    print(f"{'total (pipeline)':<20} {total:8.2f} {1000 * total / len(files):8.1f} "
          f"{audio_seconds / total:11.0f}")


if __name__ == "__main__":
    main()
