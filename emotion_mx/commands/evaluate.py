"""Evaluate a training run on a split of a feature store → RUN/eval/metrics.json + confusion PNG."""
import click


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Run folder (tools/train.py --out).")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store folder.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "valid", "test"]))
@click.option("--fold", type=int, help="Fold (default: the fold the run was trained on).")
def main(run_dir, data_dir, split, fold):
    from emotion_mx.training import evaluate_run
    m = evaluate_run(run_dir, data_dir, split=split, fold=fold)
    click.echo(f"{split} (fold {m['fold']}, {m['num_samples']} items): UA {m['unweighted_accuracy']:.4f}  "
               f"WA {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  weighted-F1 {m['weighted_f1']:.4f}")
    for label, pc in m["per_class"].items():
        click.echo(f"  {label:>12s}: recall {pc['recall']:.3f}  precision {pc['precision']:.3f}  "
                   f"F1 {pc['f1']:.3f}  (n={pc['support']})")
    suffix = "" if split == "test" else f"-{split}"
    click.echo(f"wrote {run_dir}/eval/metrics{suffix}.json and confusion{suffix}.png")

