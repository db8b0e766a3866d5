"""Run exported models (fp32 and/or INT8) through the C++ wrapper on a store split, or a model
on Whisper log-mel features on raw WAV files (``--audio``).

Builds cpp_deploy/ into cpp_deploy/build on first use.  On a store: accuracy, unweighted accuracy,
params size and C++ latency at batch 1 per model, side by side.  On WAV files: per file the
predicted label and the class probabilities.
"""
import click

from emotion_mx.errors import EmotionMXError


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(),
              help="Exported model folder (tools/export.py or tools/quantize.py); repeatable.")
@click.option("--data", type=click.Path(), help="Feature store the run was trained on.")
@click.option("--audio", "audio", multiple=True, type=click.Path(),
              help="Raw WAV file (16-bit PCM or float32, 16 kHz) instead of --data, for a model whose "
                   "model.json has frontend.audio (Whisper log-mel); repeatable.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "valid", "test"]))
@click.option("--fold", default=0, show_default=True)
@click.option("--bench", default=50, show_default=True, help="Repeats for the batch-1 latency.")
@click.option("--build-dir", type=click.Path(), help="CMake build folder (default cpp_deploy/build).")
def main(models, data, audio, split, fold, bench, build_dir):
    from emotion_mx.deploy.cpp import compare_models, predict_audio

    if bool(data) == bool(audio):
        raise EmotionMXError("give either --data STORE or --audio FILE.wav")
    if audio:
        if len(models) != 1:
            raise EmotionMXError("--audio takes exactly one --model")
        for r in predict_audio(models[0], audio, build_dir=build_dir):
            probs = " ".join(f"{k}={v:.3f}" for k, v in r["probabilities"].items())
            click.echo(f"{r['file']}\t{r['predicted']}\t{probs}")
        return
    rows = compare_models(models, data, split=split, fold=fold, bench=bench, build_dir=build_dir)
    click.echo(f"{'model':<28} {'precision':<9} {'acc':>6} {'UA':>6} {'params MB':>10} {'C++ ms (b=1)':>13}")
    for r in rows:
        click.echo(f"{r['model']:<28} {r['precision']:<9} {r['accuracy']:6.3f} {r['unweighted_accuracy']:6.3f} "
                   f"{r['params_mb']:10.3f} {r['latency_ms_batch1']:13.3f}")
