#!/usr/bin/env python
"""Latency and accuracy of the streaming pipeline at each load-adaptive quality level, on a
real clip.

    EMOTION_MX_DATA=../shared/data python benchmarks/stream_quality.py [--work work/stream_quality]
        [--epochs 20] [--per-class 3] [--repeats 1] [--screenshot docs/img/live.png]

Steps (each skipped when its output exists, so re-running only streams again):

1. the composed EmoDB + CK+48 + ISEAR store with face detection on
   (``configs/datasets/trimodal_live.yaml``), through ``tools/build_dataset.py``;
2. ``mid_tiny`` on audio + video (``configs/train/trimodal/mid.yaml``, fold 0), trained with
   ``tools/train.py`` and exported with ``tools/export.py``;
3. a clip of fold 0's **test** items (speakers and subjects the model never saw):
   ``--per-class`` items per class, each an EmoDB utterance (2 s) played while its paired CK+
   face is shown, upscaled to 200 px in a 480x360 frame (``write_corpus_clip``);
4. the clip streamed with ``--no-realtime`` at each level pinned (window 2 s, hop 0.5 s).

Per level: window latency (median, p95; features + model), face frames per window, windows
whose argmax agrees with level 0, the modalities most windows used, and accuracy of the windows that cover exactly one
utterance (start on a segment boundary) against that utterance's label.
"""
import json
from collections import Counter
import os
import statistics
import subprocess
import sys

import click
import numpy as np

from emotion_mx.cli import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
    cmd = [sys.executable] + args
    click.echo("$ " + " ".join(args), err=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def prepare(data, work, epochs):
    store = os.path.join(work, "store")
    if not os.path.isfile(os.path.join(store, "index.json")):
        _run(["tools/build_dataset.py", "--config", "configs/datasets/trimodal_live.yaml", "--root", data,
              "--out", store, "--workers", "2", "--quiet"])
    run = os.path.join(work, "run")
    if not os.path.isfile(os.path.join(run, "final.json")) and not os.path.isdir(os.path.join(work, "export")):
        _run(["tools/train.py", "--config", "configs/train/trimodal/mid.yaml", "--data", store, "--out", run,
              "--modalities", "audio,video", "--epochs", str(epochs), "--fold", "0", "--quiet"])
    export = os.path.join(work, "export")
    if not os.path.isfile(os.path.join(export, "model.json")):
        _run(["tools/export.py", "--run", run, "--out", export])
    return store, export


def test_clip(data, store, work, per_class):
    """Fold 0's test items, ``per_class`` per class, in a round-robin order of classes."""
    from emotion_mx.inference.testing import write_corpus_clip
    folds = json.load(open(os.path.join(store, "folds.json")))["folds"]
    test_groups = set(folds[0]["test"])
    items = [json.loads(line) for line in open(os.path.join(store, "manifest.jsonl"))]
    by_label = {}
    for it in items:
        if it["group"] in test_groups and it.get("audio") and it.get("image"):
            by_label.setdefault(it["label"], []).append(it)
    picked = []
    for k in range(per_class):
        for label in sorted(by_label):
            if k < len(by_label[label]):
                picked.append(by_label[label][k])
    path = os.path.join(work, "clip.avi")
    segments = [(os.path.join(data, it["audio"]), os.path.join(data, it["image"])) for it in picked]
    clip, bounds = write_corpus_clip(path, segments)
    return clip, [(a, b, it["label"]) for (a, b), it in zip(bounds, picked)]


def stream_at(predictor, clip, level):
    from emotion_mx.inference.stream import StreamRunner, open_sources
    runner = StreamRunner(predictor, window=2.0, hop=0.5, tolerance=0.1)
    runner.quality.level = level          # pinned: no budget, so the controller never moves it
    sources, _ = open_sources(predictor.modalities, predictor.config.audio.sample_rate, video=clip)
    rows = list(runner.run(sources, realtime=False))
    return rows, runner


@click.command()
@click.option("--work", default="work/stream_quality", show_default=True, type=click.Path())
@click.option("--epochs", default=20, show_default=True, type=int)
@click.option("--per-class", default=3, show_default=True, type=int)
@click.option("--repeats", default=1, show_default=True, type=int, help="Streams per level (latency pooled).")
@click.option("--screenshot", type=click.Path(),
              help="Also stream the clip through the live page in headless Chromium (latency budget 0.5 s) "
                   "and save a screenshot here.")
def main(work, epochs, per_class, repeats, screenshot):
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.inference.predict import Predictor
    from emotion_mx.inference.quality import LEVELS
    data = os.environ.get("EMOTION_MX_DATA")
    if not data or not os.path.isdir(os.path.join(data, "emodb")):
        raise EmotionMXError("set EMOTION_MX_DATA to the shared data folder (emodb/, ckplus48/, isear/)")
    os.makedirs(work, exist_ok=True)
    store, export = prepare(data, work, epochs)
    clip, segments = test_clip(data, store, work, per_class)
    predictor = Predictor(export, batch_size=1)
    starts = {round(a, 6): label for a, b, label in segments if b - a >= 2.0 - 1e-6}
    results, reference = [], None
    for level in range(len(LEVELS)):
        rows, lat = None, []
        for _ in range(repeats):
            rows, runner = stream_at(predictor, clip, level)
            lat += runner.latencies
        labels = [r["label"] for r in rows]
        reference = reference or labels
        scored = [(r["label"], starts[round(r["start"], 6)]) for r in rows
                  if round(r["start"], 6) in starts and not r["partial"]]
        results.append({
            "level": level, "name": LEVELS[level].name,
            "frames": statistics.median(r["frames"] for r in rows),
            "modalities": Counter("+".join(r["modalities"]) for r in rows).most_common(1)[0][0],
            "median": statistics.median(lat), "p95": float(np.percentile(lat, 95)),
            "agree": np.mean([a == b for a, b in zip(labels, reference)]),
            "acc": np.mean([a == b for a, b in scored]), "n_acc": len(scored), "windows": len(rows)})
    dur = segments[-1][1]
    click.echo(f"\nclip: {len(segments)} fold-0 test utterances ({dur:.1f} s, EmoDB speech + CK+48 faces), "
               f"model mid_tiny audio+video, {results[0]['windows']} windows of 2 s (hop 0.5 s), "
               f"{repeats} stream(s) per level\n")
    click.echo("| level | name | face frames | modalities | latency median (ms) | p95 (ms) | "
               "agreement with level 0 | accuracy (utterance windows) |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for r in results:
        click.echo(f"| {r['level']} | {r['name']} | {r['frames']:g} | {r['modalities']} | {r['median']:.1f} | "
                   f"{r['p95']:.1f} | {r['agree']:.2f} | {r['acc']:.2f} ({r['n_acc']}) |")


    if screenshot:
        live_screenshot(export, clip, work, screenshot)


def live_screenshot(export, clip, work, path, seconds=28):
    """The clip through the live page (fake camera + microphone), screenshot after ``seconds``."""
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.live import browser, create_app
    reason = browser.missing()
    if reason:
        raise EmotionMXError(f"--screenshot: {reason}")
    hop = 0.5
    with browser.Server(create_app(export, latency_budget=0.5, window=2.0, hop=hop)) as url:
        rows, summary, error = browser.live_session(url, clip, work, windows=int(seconds / hop), screenshot=path,
                                                    timeout=seconds + 30)
    if error:
        raise EmotionMXError(f"live page: {error}")
    levels = Counter(r["quality"]["level"] for r in rows)
    click.echo(f"\nlive page: {len(rows)} windows, per level {dict(sorted(levels.items()))}, "
               f"latency median {statistics.median(r['latency_ms'] for r in rows):.0f} ms; screenshot {path}")


if __name__ == "__main__":
    run_cli(main)
