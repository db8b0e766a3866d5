"""Run exported models (fp32 and/or INT8) through the C++ wrapper on a store split.

Builds cpp_deploy/ into cpp_deploy/build on first use, prints accuracy, unweighted accuracy,
params size and C++ latency at batch 1 per model, side by side.
"""
import os

import click


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(),
              help="Exported model folder (tools/export.py or tools/quantize.py); repeatable.")
@click.option("--data", required=True, type=click.Path(), help="Feature store the run was trained on.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "valid", "test"]))
@click.option("--fold", default=0, show_default=True)
@click.option("--bench", default=50, show_default=True, help="Repeats for the batch-1 latency.")
@click.option("--build-dir", type=click.Path(), help="CMake build folder (default cpp_deploy/build).")
def main(models, data, split, fold, bench, build_dir):
    from emotion_mx.deploy.cpp import SOURCE_DIR, build, find_binary, predict_store, run
    from emotion_mx.artifacts import EXPORT_PARAMS, read_sidecar
    from emotion_mx.training.metrics import classification_metrics

    sidecars = {m: read_sidecar(m) for m in models}           # fail on a bad folder before any output
    binary = find_binary(build_dir) or build(build_dir or os.path.join(SOURCE_DIR, "build"))
    click.echo(f"{'model':<28} {'precision':<9} {'acc':>6} {'UA':>6} {'params MB':>10} {'C++ ms (b=1)':>13}")
    for model_dir in models:
        sidecar = sidecars[model_dir]
        res = predict_store(binary, model_dir, data, split=split, fold=fold)
        labels = sidecar["labels"]
        m = classification_metrics(res["labels"], res["predicted"], len(labels), labels)
        one = {k: v[:1] for k, v in _first_batch(sidecar, data, fold, split, model_dir).items()}
        timing = run(binary, model_dir, one, bench=bench).get("latency_ms", {})
        size = os.path.getsize(os.path.join(model_dir, EXPORT_PARAMS)) / 1e6
        click.echo(f"{model_dir:<28} {sidecar.get('precision', 'fp32'):<9} {m['accuracy']:6.3f} "
                   f"{m['unweighted_accuracy']:6.3f} {size:10.3f} {timing.get('median', float('nan')):13.3f}")


def _first_batch(sidecar, data, fold, split, model_dir):
    from emotion_mx.data import FeatureStore, load_arrays
    from emotion_mx.features.text import load_vocab
    store = FeatureStore(data)
    feats = sidecar.get("features", {})
    from emotion_mx.data import load_settings
    kw = load_settings(feats)
    vocab = load_vocab(os.path.join(model_dir, sidecar["vocab"])) if sidecar.get("vocab") else None
    inputs, _ = load_arrays(store, store.ids(fold, split)[:1], sidecar["modalities"], fold=fold,
                            norm=sidecar.get("normalisation"), vocab=vocab, **kw)
    return inputs

