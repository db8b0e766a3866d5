#!/usr/bin/env python
"""The C++ Whisper log-mel front end (cpp_deploy/) against ``whisper_logmel`` (librosa): accuracy
and speed.

    python benchmarks/cpp_frontend.py [--cpp-build DIR] [--seconds 3] [--repeats 50] [--emodb N]

Accuracy: max |C++ - librosa| of the features on a synthetic clip and, with $EMOTION_MX_DATA
set, on the first N EmoDB files (resampled to 16 kHz by the project's load_audio); and max
|C++ - MXNet| of the logits of a small exported model (audio_cnn, random weights) run by
``emotion_predict --audio`` and by the Gluon SymbolBlock on whisper_logmel features.  Speed: the
median time of the front end alone on one clip of --seconds (C++: ``emotion_predict --bench``'s
``frontend_median``, WAV decoding excluded; Python: ``whisper_logmel`` on the decoded wave, the
mel basis cached), same machine, one thread each.
"""
import json
import os
import subprocess
import tempfile
import time

import click
import numpy as np

from emotion_mx.cli import run_cli


def _tone(seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@click.command()
@click.option("--cpp-build", default=None, type=click.Path(), help="Existing cpp_deploy build folder")
@click.option("--seconds", default=3.0, show_default=True, help="Clip length for the timing")
@click.option("--repeats", default=50, show_default=True, type=click.IntRange(3))
@click.option("--emodb", default=20, show_default=True, help="EmoDB files compared (needs $EMOTION_MX_DATA)")
def main(cpp_build, seconds, repeats, emodb):
    import mxnet as mx
    import soundfile as sf
    from emotion_mx import artifacts as A
    from emotion_mx.data import assemble_inputs
    from emotion_mx.deploy import cpp
    from emotion_mx.deploy.pipeline import cpu_info
    from emotion_mx.deploy.testing import make_whisper_logmel_export
    from emotion_mx.features.whisper_frontend import WHISPER_FRONTEND, whisper_logmel

    sr = WHISPER_FRONTEND["sample_rate"]
    info = cpu_info()
    click.echo(f"cpu {info['model']} x{info['cores']}")
    with tempfile.TemporaryDirectory() as tmp:
        binary = cpp.find_binary(cpp_build) or cpp.build(os.path.join(tmp, "build"))
        frames = int(max(seconds, 4.0) * sr) // WHISPER_FRONTEND["hop_length"]
        model = os.path.join(tmp, "model")
        make_whisper_logmel_export(model, audio_frames=frames)
        block, sidecar = A.load_exported(model)
        settings = A.exported_settings(sidecar)

        def compare(waves, label):
            paths = []
            for i, w in enumerate(waves):
                paths.append(os.path.join(tmp, f"{label}{i}.wav"))
                sf.write(paths[-1], w, sr, subtype="FLOAT")
            dump = os.path.join(tmp, "features.npy")
            out = cpp.run_audio(binary, model, paths, dump_features=dump)
            got = np.load(dump)
            refs = [whisper_logmel(w) for w in waves]
            diffs = [np.abs(got[i, :len(ref)] - ref[:frames]).max() for i, ref in enumerate(refs)]
            x = assemble_inputs([{"whisper_logmel": ref} for ref in refs], ("audio",), settings, norm=None)
            logits = block(mx.nd.array(x["audio"]), mx.nd.array(x["audio_mask"])).asnumpy()
            dl = np.abs(np.asarray(out["logits"], np.float32) - logits).max()
            click.echo(f"{label:<10} {len(waves):>3} clips: max |C++ - librosa| features {max(diffs):.3g}, "
                       f"max |C++ - MXNet| logits {dl:.3g}")

        compare([_tone(seconds, sr)], "synthetic")
        data = os.environ.get("EMOTION_MX_DATA")
        wav_dir = data and os.path.join(data, "emodb", "wav")
        if emodb and wav_dir and os.path.isdir(wav_dir):
            from emotion_mx.features.audio import load_audio
            compare([load_audio(os.path.join(wav_dir, f), sample_rate=sr)
                     for f in sorted(os.listdir(wav_dir))[:emodb]], "emodb")

        wave = _tone(seconds, sr, seed=1)
        path = os.path.join(tmp, "timing.wav")
        sf.write(path, wave, sr, subtype="FLOAT")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = json.loads(subprocess.run([binary, "--model", model, "--audio", path, "--bench", str(repeats)],
                                        capture_output=True, text=True, check=True, env=env).stdout)
        cpp_ms = out["latency_ms"]["frontend_median"]
        whisper_logmel(wave)                                                    # warm-up, mel basis cached
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            whisper_logmel(wave)
            ms.append((time.perf_counter() - t0) * 1e3)
        py_ms = float(np.median(ms))
        click.echo(f"front end on a {seconds:g} s clip ({len(wave) // WHISPER_FRONTEND['hop_length']} frames), "
                   f"median of {repeats}: C++ {cpp_ms:.3f} ms, librosa {py_ms:.3f} ms, "
                   f"C++/librosa {cpp_ms / py_ms:.2f}")


if __name__ == "__main__":
    run_cli(main)
