"""``emotion-mx embed``: cache a pretrained encoder's per-layer embeddings in a feature store,
optionally train heads on them (selected on validation speakers, test read once per fold)."""
import click

ENCODERS = ("whisper_tiny_en", "whisper_base", "minilm_l6", "fer_mini_xception")
METRIC_NAMES = {"ua": "UA", "wa": "WA", "macro_f1": "macro F1", "weighted_f1": "weighted F1"}


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store folder.")
@click.option("--encoder", required=True, type=click.Choice(ENCODERS), help="Pretrained encoder.")
@click.option("--checkpoint", type=click.Path(), help="Your copy of the checkpoint file (default: the "
              "installed weight package's).")
@click.option("--context-turns", default=0, show_default=True, type=click.IntRange(0, 20),
              help="Text only: encode each utterance after its K preceding dialogue turns (ids <dialogue>_<turn>).")
@click.option("--train-heads", is_flag=True, help="Then train layer-weighted heads per fold and report test scores.")
@click.option("--metric", default="ua", show_default=True, type=click.Choice(list(METRIC_NAMES)),
              help="Validation score that selects the head.")
def embed(data_dir, encoder, checkpoint, context_turns, train_heads, metric):
    import os

    from emotion_mx.data import FeatureStore
    from emotion_mx.fileio import write_json
    from emotion_mx.pretrained.embed import compute_embeddings, load_embeddings
    store = FeatureStore(data_dir)
    cache, stats = compute_embeddings(store, encoder, checkpoint=checkpoint, context_turns=context_turns)
    info = cache.read_info()
    click.echo(f"{cache.dir}: {stats['items']} items ({stats['computed']} computed, {stats['reused']} reused), "
               f"per item {tuple(info['shape'])} ({info['pooling']} of {info['num_states']} hidden states)")
    if not train_heads:
        return
    import warnings

    from emotion_mx.pretrained.heads import crossval_heads
    # a fixed-layer head leaves the layer-weighting logits unused, by design
    warnings.filterwarnings("ignore", message="Parameter .*layer_logits is not used")
    feats, _ = load_embeddings(store, cache.name)
    rows = crossval_heads(store, [feats], metric=metric, log=click.echo)
    path = os.path.join(cache.dir, f"heads-{metric}.json")
    write_json(path, {"encoder": encoder, "metric": metric, "folds": rows})
    test = [r["test"][metric] for r in rows]
    click.echo(f"test {METRIC_NAMES[metric]} {100 * sum(test) / len(test):.1f} over {len(test)} fold(s) "
               f"(head chosen on validation {METRIC_NAMES[metric]}); wrote {path}")
