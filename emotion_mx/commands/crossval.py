"""Cross-validation: train + evaluate every fold and seed; mean ± std table (Markdown + JSON)."""
import click

from ..cli import SET_HELP
from ..provenance import write_command


@click.command()
@click.option("--config", "config_path", type=click.Path(), help="Training YAML.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store folder.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the runs and results.")
@click.option("--folds", default="all", show_default=True, help="'all' or fold ids, e.g. 0,2.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds, e.g. 0,1.")
@click.option("--gpus", help="GPU ids, e.g. 0,1.")
@click.option("--cpus", type=int, help="Number of CPU contexts.")
@click.option("--amp", is_flag=True, help="Mixed precision (see tools/train.py).")
@click.option("--epochs", type=int, help="Override epochs.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def main(config_path, data_dir, out_dir, folds, seeds, gpus, cpus, amp, epochs, quiet, sets):
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.training import cross_validate, load_train_config, make_contexts
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise EmotionMXError(f"--seeds: expected integers like 0,1, got {seeds!r}") from None
    cfg = load_train_config(config_path, {"epochs": epochs} if epochs else None, sets=sets)
    contexts, note = make_contexts(gpus=gpus, cpus=cpus)
    if note:
        click.echo(note)
    res = cross_validate(cfg, data_dir, out_dir, folds=folds, seeds=seed_list, contexts=contexts, amp=amp,
                         progress=not quiet, echo=click.echo)
    for folder in [out_dir] + [row["run"] for row in res["runs"]]:
        write_command(folder)
    click.echo(res["markdown"])
    click.echo(f"wrote {out_dir}/results.md and results.json")

