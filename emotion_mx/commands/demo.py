"""`make demo`: ready zoo models on real data first, then the whole lifecycle on a synthetic tri-modal
corpus, with the same commands a user runs.

zoo models (no training) → corpus → build → train (2 CPU contexts) → evaluate → export → quantize → C++ predict → Python API
→ a frozen pretrained encoder (Whisper tiny.en) with a head chosen on validation speakers → the
same encoder fine-tuned end to end, exported as one graph and run on a raw wav.
Each step prints the exact command it runs, so the demo doubles as a usage example.
"""
import json
import os
import shlex
import subprocess
import sys
import time

import click

from ..errors import EmotionMXError


def _run(args, title):
    """Run ``emotion-mx ARGS`` (as ``python -m emotion_mx``, the same interpreter) in this folder."""
    cmd = [sys.executable, "-m", "emotion_mx"] + args
    click.secho(f"\n== {title}", bold=True)
    click.echo("$ " + " ".join(shlex.quote(a) for a in ["emotion-mx"] + args))
    t0 = time.time()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise EmotionMXError(f"demo step '{title}' failed (exit {proc.returncode}); see the output above")
    click.echo(f"({time.time() - t0:.1f} s)")


def _finetune(out, store, corpus, items):
    """Step 10: Whisper tiny.en fine-tuned through `train`, exported, `predict` on a raw wav."""
    run, export = os.path.join(out, "run_whisper"), os.path.join(out, "export_whisper")
    train = ["train", "--config", "configs/train/pretrained/demo_whisper.yaml", "--data", store, "--out", run,
             "--fold", "0"]
    if os.path.exists(os.path.join(run, "checkpoints")):
        train.append("--resume")
    _run(train, "10. the same encoder fine-tuned end to end (stem + 2 layers frozen, layer-wise learning rates)")
    _run(["evaluate", "--run", run, "--data", store, "--split", "test"], "10b. its test split")
    _run(["export", "--run", run, "--out", export], "10c. encoder + head as one symbol/params graph")
    wav = next(os.path.join(corpus, it.audio) for it in items if it.audio)
    _run(["predict", "--model", export, "--audio", wav], "10d. prediction from a raw wav (Whisper front end "
         "repeated from the sidecar)")
    return json.load(open(os.path.join(run, "eval", "metrics.json")))


def _zoo_first():
    """Step 0: the ready models, with no training: a sentence always, real shared clips and faces
    when ``$EMOTION_MX_DATA`` points at the shared data."""
    try:
        from ..pretrained.sources import checkpoint_path
        for name in ("whisper_base", "minilm_l6", "fer_mini_xception"):
            checkpoint_path(name)
    except EmotionMXError as e:                      # weights not installed: say so, skip the step
        click.secho("\n== 0. ready models", bold=True)
        click.echo(f"skipped: {e}")
        return
    _run(["zoo", "list"], "0. ready models (no corpus, no training): the zoo")
    _run(["predict", "--text", "I waited two hours and nobody even called to say sorry."],
         "0a. a sentence, the text model")
    data = os.environ.get("EMOTION_MX_DATA")
    wav = data and os.path.join(data, "ravdess", "Actor_01", "03-01-05-02-01-01-01.wav")
    if not wav or not os.path.isfile(wav):
        click.echo("(set EMOTION_MX_DATA to the shared data folder to see the speech and face models on real "
                   "recordings)")
        return
    face = os.path.join(data, "ckplus48", "happy", sorted(os.listdir(os.path.join(data, "ckplus48", "happy")))[0])
    _run(["predict", wav], "0b. a real RAVDESS clip (actor 01, 'angry'), the speech model")
    _run(["predict", face], "0c. a real CK+48 face ('happy'), the face model")
    _run(["predict", wav, face, "--text", "Kids are talking by the door."],
         "0d. all three at once, the multimodal model (product of experts)")


@click.command()
@click.option("--out", default="work/demo", show_default=True, type=click.Path(), help="Working folder.")
@click.option("--epochs", default=None, type=int, help="Override the demo training epochs.")
def main(out, epochs):
    from emotion_mx.demo import make_demo_corpus
    corpus, store, run = (os.path.join(out, d) for d in ("corpus", "store", "run"))
    export, int8 = os.path.join(out, "export"), os.path.join(out, "int8")
    _zoo_first()

    click.secho("== 1. synthetic demo corpus (espeak-ng speech, transcripts, drawn face clips)", bold=True)
    items = make_demo_corpus(corpus)
    click.echo(f"{len(items)} utterances in {corpus} (synthetic: numbers on it say nothing about real data)")

    _run(["build", "--config", "configs/datasets/demo.yaml", "--root", corpus,
          "--out", store, "--workers", "2"], "2. features, DTW word alignment, speaker-independent folds")
    train = ["train", "--config", "configs/train/demo.yaml", "--data", store, "--out", run,
             "--cpus", "2", "--fold", "0"]
    if epochs:
        train += ["--epochs", str(epochs)]
    if os.path.exists(os.path.join(run, "checkpoints")):
        train.append("--resume")
    _run(train, "3. training on 2 CPU contexts (the --gpus code path)")
    _run(["evaluate", "--run", run, "--data", store, "--split", "test"], "4. evaluation on the test split")
    _run(["export", "--run", run, "--out", export], "5. export to symbol/params + sidecar")
    _run(["quantize", "--run", run, "--data", store, "--calib-mode", "naive", "--out", int8],
         "6. INT8 post-training quantization")
    _run(["cpp-predict", "--model", export, "--model", int8, "--data", store, "--split", "test"],
         "7. C++ inference wrapper (cpp_deploy/) on test items")

    click.secho("\n== 8. the Python API on one corpus item", bold=True)
    from ..demo import predict_with_api
    item, result = predict_with_api(export, corpus)
    click.echo(f'EmotionRecognizer.load("{export}").predict(audio=..., video=..., text="{item.text}")')
    click.echo(f"{item.id} (true: {item.label}) -> {result.label}  "
               + "  ".join(f"{k} {p:.2f}" for k, p in result.probabilities.items())
               + f"  [{', '.join(result.modalities)}; {result.timings['total']:.0f} ms]")

    pretrained = None
    try:
        from ..pretrained.sources import checkpoint_path
        checkpoint_path("whisper_tiny_en")
    except EmotionMXError as e:                      # weights not installed: say so, skip the step
        click.secho("\n== 9. a pretrained encoder", bold=True)
        click.echo(f"skipped: {e}")
    else:
        _run(["embed", "--data", store, "--encoder", "whisper_tiny_en", "--train-heads"],
             "9. a pretrained encoder: frozen Whisper tiny.en, per-layer embeddings cached in the store, "
             "a head chosen on validation speakers (audio only, every fold)")
        heads = json.load(open(os.path.join(store, "embeddings", "whisper_tiny_en", "heads-ua.json")))
        pretrained = [f["test"]["ua"] for f in heads["folds"]]
        finetuned = _finetune(out, store, corpus, items)

    metrics = json.load(open(os.path.join(run, "eval", "metrics.json")))
    report = json.load(open(os.path.join(int8, "quant_report.json")))
    click.secho("\n== summary", bold=True)
    click.echo(f"test UA {metrics['unweighted_accuracy']:.3f}  WA {metrics['accuracy']:.3f}  "
               f"macro-F1 {metrics['macro_f1']:.3f}  (labels: {', '.join(metrics['labels'])})")
    if pretrained:
        click.echo(f"frozen Whisper tiny.en + head, audio only: test UA {sum(pretrained) / len(pretrained):.3f} "
                   f"(mean of {len(pretrained)} folds; fold 0: {pretrained[0]:.3f})")
        click.echo(f"fine-tuned Whisper tiny.en, audio only, fold 0: test UA {finetuned['unweighted_accuracy']:.3f}")
    click.echo(json.dumps(report.get("summary", report), indent=2))

