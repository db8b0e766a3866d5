"""Architecture / hyper-parameter search over the model registry with autogluon.core, locally or
on Ray; every trial is a real training run scored on VALIDATION UA (see docs/search.md)."""
import click

from ..cli import SET_HELP
from ..provenance import write_command


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(),
              help="Search YAML (configs/search/): base TrainConfig, space, budget.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store folder.")
@click.option("--trials", required=True, type=int, help="Total number of trials (finished ones in --out count).")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Search folder; run the same command again to continue an interrupted search.")
@click.option("--searcher", default="random", show_default=True, type=click.Choice(["random", "grid", "bayes"]),
              help="random/grid: autogluon.core local searchers; bayes: HyperOpt, with --scheduler ray.")
@click.option("--scheduler", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: sequential in this process; ray: parallel trials on Ray Tune.")
@click.option("--ray-address", help="Existing Ray cluster (e.g. 10.0.0.5:6379 or auto); default: a local Ray.")
@click.option("--fold", default=0, show_default=True, help="Fold of the store; trials select on its valid split.")
@click.option("--seed", type=int, help="Seed of the searcher and of every trial's training (default: base.seed).")
@click.option("--quiet", is_flag=True, help="Less output (no Ray status tables).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def main(config_path, data_dir, trials, out_dir, searcher, scheduler, ray_address, fold, seed, quiet, sets):
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.search import load_search_config, run_search
    cfg = load_search_config(config_path, sets=sets)
    result = run_search(cfg, data_dir, out_dir, trials=trials, searcher=searcher, scheduler=scheduler,
                        ray_address=ray_address, fold=fold, seed=seed, progress=not quiet, echo=click.echo)
    write_command(out_dir)
    if result.best is None:
        raise EmotionMXError(f"no trial finished; see {out_dir}/leaderboard.md")

