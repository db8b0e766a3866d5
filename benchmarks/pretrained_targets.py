"""Issue 12 targets: frozen pretrained encoders + validation-selected heads on the shared data.

Usage (stores built first with tools/build_dataset.py, see benchmarks/results.md)::

    nice -n 10 python benchmarks/pretrained_targets.py --work work [--only emodb,ckplus48] [--cost]

For each target: the encoder's per-layer embeddings are cached in the store
(``STORE/embeddings/<encoder>/``, resumable), then per fold a layer-weighted head is chosen on
the validation speakers/subjects/writers (grid: learned weighting or each single layer, linear
or MLP, weight decay) and the test split is read once.  Prints a markdown table (mean ± std
over folds, per-fold figures) and writes ``WORK/pretrained_targets.json``.  ``--cost`` adds
each encoder's parameters, MACs and fp32 latency at batch 1 and 32.
"""
import json
import os
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# target -> (store folder, encoders (one cache per modality), selection metric, reported metric,
#            target value in %, from-scratch figure from benchmarks/results.md, context turns)
TARGETS = {
    "emodb": ("emodb", ["whisper_base"], "ua", "ua", 88, "62.3 ± 8.5 (audio_cnn, 3 blocks)", 0),
    "emodb_tiny": ("emodb", ["whisper_tiny_en"], "ua", "ua", 88, "62.3 ± 8.5 (audio_cnn, 3 blocks)", 0),
    "ckplus48": ("ckplus48", ["fer_mini_xception"], "ua", "ua", 85, "not reported", 0),
    "isear": ("isear", ["minilm_l6"], "wa", "wa", 65, "not reported", 0),
    "trimodal": ("trimodal", ["whisper_base", "minilm_l6", "fer_mini_xception"], "ua", "ua", 90,
                 "72.4 ± 6.4 (late_base, product of experts)", 0),
    "iemocap_text": ("iemocap_text", ["minilm_l6"], "weighted_f1", "weighted_f1", 56, "none", 0),
    "iemocap_text_ctx": ("iemocap_text", ["minilm_l6"], "weighted_f1", "weighted_f1", 56, "none", 2),
}
METRIC_NAMES = {"ua": "test UA", "wa": "test accuracy", "weighted_f1": "test weighted F1"}


def _mean_std(values):
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std():.1f}"


def run_target(name, work, log):
    from emotion_mx.data import FeatureStore
    from emotion_mx.pretrained.embed import compute_embeddings, load_embeddings
    from emotion_mx.pretrained.heads import crossval_heads
    folder, encoders, select, report, target, scratch, ctx = TARGETS[name]
    store = FeatureStore(os.path.join(work, folder))
    caches, embed_s = [], 0.0
    for enc in encoders:
        t0 = time.time()
        cache, stats = compute_embeddings(store, enc, context_turns=ctx if enc == "minilm_l6" else 0)
        embed_s += time.time() - t0
        log(f"{name}: {enc} embeddings {stats} ({time.time() - t0:.0f} s)")
        caches.append(load_embeddings(store, cache.name)[0])
    # ISEAR (7,538 texts, 5 folds): only the learned layer weighting is searched (3 heads per fold
    # instead of 17) to fit the 2-core budget; every other target searches each single layer too
    single = name != "isear"
    rows = crossval_heads(store, caches, metric=select, single_layers=single, log=lambda m: log(f"{name}: {m}"))
    vals = [r["test"][report] for r in rows]
    train_only = [r["test_train_only"][report] for r in rows]
    return {"target": name, "store": folder, "encoders": encoders, "context_turns": ctx, "select_metric": select,
            "report_metric": report, "target_pct": target, "from_scratch": scratch,
            "mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_fold": vals,
            "per_fold_train_only": train_only, "folds": rows, "single_layers_searched": single,
            "embed_seconds": round(embed_s, 1)}


def ckplus_zero_shot(work):
    """fer's own FER2013 head on CK+48, the 6 classes both share (no training)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from emotion_mx.data import FeatureStore
    from emotion_mx.models.fer_xception import FER2013_CLASSES
    from emotion_mx.pretrained.embed import load_embeddings
    store = FeatureStore(os.path.join(work, "ckplus48"))
    feats, _ = load_embeddings(store, "fer_mini_xception")
    to_fer = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
              "sadness": "sad", "surprise": "surprise"}
    shared = [FER2013_CLASSES.index(to_fer[l]) for l in sorted(to_fer)]
    y, p = [], []
    for it in store.items:
        if it.label in to_fer and it.id in feats:
            logits = feats[it.id][0, -len(FER2013_CLASSES):]
            y.append(FER2013_CLASSES.index(to_fer[it.label]))
            p.append(shared[int(np.argmax(logits[shared]))])
    return {"images": len(y), "accuracy": float(accuracy_score(y, p)), "ua": float(balanced_accuracy_score(y, p))}


def encoder_cost(name, repeats=5):
    import mxnet as mx

    from emotion_mx.models.summary import count_macs
    from emotion_mx.pretrained.loader import encoder_info, load_encoder
    net = load_encoder(name)
    kind = encoder_info(name)["kind"]
    shapes = {"whisper": lambda b: [(b, 200, 80), (b, 200)],        # 2 s of audio
              "minilm": lambda b: [(b, 32), (b, 32)],                 # 32 tokens
              "fer": lambda b: [(b, 1, 64, 64)]}[kind]
    params = sum(int(np.prod(p.shape)) for p in net.collect_params().values())
    names = ["x", "mask"][:len(shapes(1))]
    out = net(*[mx.sym.var(n) for n in names])
    sym = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    macs, _ = count_macs(sym, dict(zip(names, shapes(1))))
    net.hybridize(static_alloc=True, static_shape=True)
    lat = {}
    for b in (1, 32):
        xs = [mx.nd.ones(s) if i else mx.nd.array(np.random.RandomState(0).randint(1, 1000, s)
                                                   if kind == "minilm" else np.random.randn(*s))
              for i, s in enumerate(shapes(b))]
        for _ in range(2):
            mx.nd.waitall(); [o.wait_to_read() for o in net(*xs)]
        t0 = time.time()
        for _ in range(repeats):
            [o.wait_to_read() for o in net(*xs)]
        lat[b] = (time.time() - t0) / repeats * 1000
    inp = {"whisper": "2 s (200 x 80 log-mel)", "minilm": "32 tokens", "fer": "one 64x64 face"}[kind]
    return {"encoder": name, "params": params, "macs": macs, "input": inp, "latency_ms_b1": lat[1],
            "latency_ms_b32": lat[32]}


def whisper_parity(name, seconds=3.0):
    """Max abs difference / min cosine of our encoder vs ctranslate2 on the same features."""
    import tempfile

    import ctranslate2
    import mxnet as mx

    from emotion_mx.features.whisper_frontend import whisper_logmel
    from emotion_mx.pretrained.loader import load_encoder
    from emotion_mx.pretrained.sources import checkpoint_path, package_file
    rng = np.random.RandomState(0)
    t = np.arange(int(16000 * seconds)) / 16000.0
    wave = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.02 * rng.randn(len(t))).astype(np.float32)
    mel = whisper_logmel(wave)
    net = load_encoder(name)
    ours = net(mx.nd.array(mel[None]), mx.nd.ones((1, len(mel))))[0].asnumpy()[0, -1]
    with tempfile.TemporaryDirectory() as d:      # a CTranslate2 model folder: model.bin, config, vocabulary
        os.symlink(checkpoint_path(name), os.path.join(d, "model.bin"))
        for extra in ("config.json", "vocabulary.txt", "tokenizer.json"):
            if os.path.isfile(package_file(name, extra)):
                os.symlink(package_file(name, extra), os.path.join(d, extra))
        ref = ctranslate2.models.Whisper(d, device="cpu", compute_type="float32")
        ref = np.array(ref.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[None])),
                                  to_cpu=True))[0]
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    return {"encoder": name, "max_abs_diff": float(np.abs(ours - ref).max()), "min_cosine": float(cos.min())}


def markdown(results, zero_shot, costs, parity=None):
    lines = ["| target | data | encoder(s) | metric | from scratch | frozen + head (refit on train + valid) | "
             "target | gap | per-fold | head on train only |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        gap = 100 * r["mean"] - r["target_pct"]
        ctx = f", {r['context_turns']} preceding turns" if r["context_turns"] else ""
        lines.append(f"| {r['target']} | {r['store']} ({len(r['per_fold'])} fold(s)) | {' + '.join(r['encoders'])}{ctx} | "
                     f"{METRIC_NAMES[r['report_metric']]} | {r['from_scratch']} | **{_mean_std(r['per_fold'])}** | "
                     f"≥ {r['target_pct']} | {gap:+.1f} | {', '.join(f'{100 * v:.1f}' for v in r['per_fold'])} | "
                     f"{_mean_std(r['per_fold_train_only']) if 'per_fold_train_only' in r else '-'} |")
    lines.append("")
    lines.append("Chosen heads (validation only):")
    for r in results:
        chosen = "; ".join(f"f{f['fold']}: layer {f['config']['layer']}, hidden {f['config']['hidden_units']}, "
                           f"wd {f['config']['wd']}, valid {100 * f['valid_' + r['select_metric']]:.1f}"
                           for f in r["folds"])
        lines.append(f"- {r['target']}: {chosen}")
    if zero_shot:
        lines += ["", f"CK+48 zero-shot with fer's own FER2013 head ({zero_shot['images']} images of the 6 shared "
                      f"classes): accuracy {zero_shot['accuracy']:.3f}, UA {zero_shot['ua']:.3f}."]
    if costs:
        lines += ["", "| encoder | parameters | MACs per input | input | fp32 latency batch 1 | fp32 latency batch 32 |",
                  "|---|---|---|---|---|---|"]
        for c in costs:
            lines.append(f"| {c['encoder']} | {c['params'] / 1e6:.2f} M | {c['macs'] / 1e9:.3f} G | {c['input']} | "
                         f"{c['latency_ms_b1']:.1f} ms | {c['latency_ms_b32']:.1f} ms |")
    for p in parity or []:
        lines.append(f"\nParity {p['encoder']} vs ctranslate2 (3 s input): max abs difference "
                     f"{p['max_abs_diff']:.2e}, min per-frame cosine {p['min_cosine']:.6f}.")
    return "\n".join(lines)


@click.command()
@click.option("--work", default="work", show_default=True, type=click.Path(), help="Folder holding the stores.")
@click.option("--only", default=",".join(TARGETS), show_default=True, help="Comma-separated targets.")
@click.option("--cost/--no-cost", default=False, help="Also measure params, MACs, latency.")
@click.option("--parity/--no-parity", default=False, help="Also compare both Whisper encoders with ctranslate2.")
@click.option("--merge", "merge", multiple=True, type=click.Path(exists=True),
              help="Results JSON of another run of this script (targets run in parallel); repeatable.")
def main(work, only, cost, parity, merge):
    import warnings
    warnings.filterwarnings("ignore")
    out_path = os.path.join(work, "pretrained_targets.json")
    previous = json.load(open(out_path)) if os.path.isfile(out_path) else {}
    results = {r["target"]: r for r in previous.get("results", [])}
    for path in merge:
        with open(path) as f:
            results.update({r["target"]: r for r in json.load(f).get("results", [])})
    previous["results"] = [results[n] for n in TARGETS if n in results]
    log = lambda m: click.echo(m, err=True)   # noqa: E731
    for name in [n.strip() for n in only.split(",") if n.strip()]:
        if name not in TARGETS:
            raise click.BadParameter(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
        if not os.path.isdir(os.path.join(work, TARGETS[name][0])):
            log(f"{name}: no store {os.path.join(work, TARGETS[name][0])}; skipped")
            continue
        results[name] = run_target(name, work, log)
        previous["results"] = [results[n] for n in TARGETS if n in results]
        with open(out_path, "w") as f:
            json.dump(previous, f, indent=1)
    zero = previous.get("ckplus_zero_shot")
    if "ckplus48" in results:
        zero = previous["ckplus_zero_shot"] = ckplus_zero_shot(work)
    costs = previous.get("costs")
    if cost:
        costs = previous["costs"] = [encoder_cost(n) for n in
                                     ("whisper_tiny_en", "whisper_base", "minilm_l6", "fer_mini_xception")]
    par = previous.get("parity")
    if parity:
        par = previous["parity"] = [whisper_parity(n) for n in ("whisper_tiny_en", "whisper_base")]
    with open(out_path, "w") as f:
        json.dump(previous, f, indent=1)
    click.echo(markdown([results[n] for n in TARGETS if n in results], zero, costs, par))


if __name__ == "__main__":
    main()
