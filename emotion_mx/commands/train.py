"""Train a model on a feature store into a run directory (see docs/training.md)."""
import click

from ..cli import SET_HELP
from ..provenance import write_command


@click.command()
@click.option("--config", "config_path", type=click.Path(), help="Training YAML (configs/train/); default: built-in defaults.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store folder (tools/build_dataset.py --out).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run folder to create (or continue with --resume).")
@click.option("--gpus", help="GPU ids, e.g. 0,1 (CPU contexts instead, with a message, where there is no GPU).")
@click.option("--cpus", type=int, help="Number of CPU contexts (data-parallel code path without GPUs).")
@click.option("--amp", is_flag=True, help="Mixed precision: float16 on GPUs, bfloat16 on AVX-512 CPUs, else float32.")
@click.option("--fold", default=0, show_default=True, help="Fold of the store's cross-validation folds.")
@click.option("--modalities", help="Override data.modalities, e.g. audio,text,video.")
@click.option("--epochs", type=int, help="Override epochs.")
@click.option("--batch-size", type=int, help="Override batch_size (global).")
@click.option("--kvstore", default="device", show_default=True,
              type=click.Choice(["device", "local", "dist_sync", "dist_device_sync"]),
              help="dist_* needs tools/launch.py.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option("--seed", type=int, help="Override seed.")
@click.option("--trust-pickle", is_flag=True,
              help="With --resume: load an old pickled checkpoint (.states). Pickles run code: only for runs you made.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def main(config_path, data_dir, out_dir, gpus, cpus, amp, fold, modalities, epochs, batch_size, kvstore,
         resume, seed, trust_pickle, quiet, sets):
    import os
    from emotion_mx.training import load_train_config, make_contexts, train
    if trust_pickle:
        from emotion_mx.training.checkpoint import TRUST_PICKLE_ENV
        os.environ[TRUST_PICKLE_ENV] = "1"
    overrides = {}
    if modalities:
        overrides["data"] = {"modalities": [m.strip() for m in modalities.split(",") if m.strip()]}
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    cfg = load_train_config(config_path, overrides, sets=sets)
    contexts, note = make_contexts(gpus=gpus, cpus=cpus)
    if note:
        click.echo(note)
    result = train(cfg, data_dir, out_dir, fold=fold, contexts=contexts, amp=amp, kvstore=kvstore,
                   resume=resume, progress=not quiet, echo=click.echo)
    write_command(out_dir)
    click.echo(f"done: best validation UA {result.best_score:.4f} at epoch {result.best_epoch} "
               f"({result.epochs_run} epoch(s){', stopped early' if result.stopped_early else ''}); run in {out_dir}")

