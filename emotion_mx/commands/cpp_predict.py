"""Run exported models (fp32 and/or INT8) through the C++ wrapper on a store split.

Builds cpp_deploy/ into cpp_deploy/build on first use, prints accuracy, unweighted accuracy,
params size and C++ latency at batch 1 per model, side by side.
"""
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
    from emotion_mx.deploy.cpp import compare_models

    rows = compare_models(models, data, split=split, fold=fold, bench=bench, build_dir=build_dir)
    click.echo(f"{'model':<28} {'precision':<9} {'acc':>6} {'UA':>6} {'params MB':>10} {'C++ ms (b=1)':>13}")
    for r in rows:
        click.echo(f"{r['model']:<28} {r['precision']:<9} {r['accuracy']:6.3f} {r['unweighted_accuracy']:6.3f} "
                   f"{r['params_mb']:10.3f} {r['latency_ms_batch1']:13.3f}")
