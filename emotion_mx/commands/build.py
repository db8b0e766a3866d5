"""Build a feature store: corpus → manifest → features + DTW alignment → shards, folds, stats."""
import click

from ..cli import SET_HELP


@click.command()
@click.option("--corpus", help="Reader name (see --list); default: 'corpus' in --config.")
@click.option("--root", type=click.Path(), help="Corpus root folder.")
@click.option("--out", type=click.Path(), help="Output store folder (resumed if it exists).")
@click.option("--config", "config_path", type=click.Path(), help="Dataset YAML (configs/datasets/).")
@click.option("--workers", default=1, show_default=True, help="Worker processes for feature extraction.")
@click.option("--folds", type=int, help="Speaker-independent folds (overrides splits.folds).")
@click.option("--strict", is_flag=True, help="Fail on the first bad item instead of skipping it.")
@click.option("--limit", type=int, help="Only the first N items (smoke tests).")
@click.option("--list", "list_readers", is_flag=True, help="List corpus readers and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def main(corpus, root, out, config_path, workers, folds, strict, limit, list_readers, quiet, sets):
    from emotion_mx.build import build_dataset
    from emotion_mx.config import DatasetConfig, load_config
    from emotion_mx.errors import EmotionMXError

    if list_readers:
        from emotion_mx.corpora import list_readers as names
        click.echo("\n".join(names()))
        return
    overrides = {"splits": {"folds": folds}} if folds is not None else None
    cfg = load_config(config_path, DatasetConfig, overrides=overrides, sets=sets)
    corpus = corpus or cfg.corpus
    if not corpus or not root or not out:
        raise EmotionMXError("give --corpus (or 'corpus' in --config), --root and --out")
    stats = build_dataset(corpus, root, out, cfg=cfg, workers=workers, strict=strict,
                          progress=not quiet, limit=limit)
    folds_n = len(stats["splits_per_fold"])
    mods = ", ".join(f"{m} {n}" for m, n in stats["modalities"].items())
    click.echo(f"built {out}: {stats['items']} items ({mods}), {stats['skipped']} skipped "
               f"(reasons in {out}/stats.json), {len(stats['labels'])} labels, {folds_n} fold(s), "
               f"{stats['aligned_items']} word-aligned, {stats['seconds']:.1f} s")

