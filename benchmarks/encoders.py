"""The pretrained encoders deployed: size, MACs, latency of five runtimes, INT8 agreement.

    EMOTION_MX_DATA=/work/shared/data nice -n 10 .venv/bin/python benchmarks/encoders.py \\
        [--encoders whisper_tiny_en,minilm_l6,fer_mini_xception] [--rounds 3] [--repeats 3] \\
        [--profile] [--markdown OUT.md]

Per encoder (checkpoint weights): real items of its corpus (EmoDB 2 s clips as Whisper log-mel,
ISEAR texts as 32 WordPieces, CK+48 faces at 64x64), split by speaker / respondent / subject
(:func:`emotion_mx.deploy.encoders.group_split`); a head (softmax layer weighting + linear) trained
on the training groups' fp32 features (epoch chosen on the validation groups) makes the
classifier that is exported, so arg-max agreement and UA mean something.  Then:

* MXNet fp32: the Gluon block hybridized with ``static_alloc`` (oneDNN-fused by default);
* MXNet INT8: :func:`~emotion_mx.deploy.encoders.choose_int8` (oneDNN; calibration on 64
  training items; the exclusion set chosen by validation agreement);
* MXNet INT8 + interleaved attention (Whisper only): the same encoder with
  ``attention="interleaved"`` (Q·K^T and attention·V as oneDNN INT8 ops), same exclusions;
* ORT fp32 / ORT INT8: ``export_onnx`` of the fp32 folder / static QDQ INT8 (op set chosen by
  validation agreement, as in ``tools/quantize.py``).

Latency: the test items' first rows at batch 1 and 32, interleaved rounds (median of round
medians, min..max); speed-ups are per-round ratios to MXNet fp32.  Agreement and UA: on the
test groups.  ``--profile``: MXNet's per-operator tables (batch 1) of fp32 and the INT8 variants.
Default run (three encoders) takes a few minutes on 2 cores; ``--encoders all`` adds whisper_base.
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from emotion_mx import artifacts as A  # noqa: E402
from emotion_mx.deploy import encoders as E  # noqa: E402
from emotion_mx.deploy.onnx_export import export_onnx  # noqa: E402
from emotion_mx.deploy.ort_runtime import (AGREEMENT_FLOOR, ORT_OP_SETS, OrtRunner, compare_latency,  # noqa: E402
                                           quantize_onnx)
from emotion_mx.deploy.pipeline import cpu_info  # noqa: E402
from emotion_mx.deploy.runtime import Runner  # noqa: E402

DEFAULT = ("whisper_tiny_en", "minilm_l6", "fer_mini_xception")
ALL = ("whisper_tiny_en", "whisper_base", "minilm_l6", "fer_mini_xception")
# items per corpus (every k-th): all 535 EmoDB clips, 1/5 of ISEAR, all 981 CK+48 faces
SAMPLING = {"whisper": dict(stride=1), "minilm": dict(stride=5), "fer": dict(stride=1)}
LENGTHS = {"whisper": {}, "minilm": {}, "fer": dict(num_frames=1)}
CALIB_ITEMS, CALIB_BATCH = 64, 16


class GluonRunner:
    """The Gluon block, hybridized with static memory (what training and ``predict`` run)."""

    def __init__(self, net, names):
        import mxnet as mx
        self.mx, self.net, self.names = mx, net, names
        net.hybridize(static_alloc=True, static_shape=True)

    def __call__(self, batch):
        return self.net(*[self.mx.nd.array(batch[n]) for n in self.names]).asnumpy()


def batched(run, inputs, batch_size=32):
    n = len(next(iter(inputs.values())))
    out = []
    for s in range(0, n, batch_size):
        chunk = {k: v[s:s + batch_size] for k, v in inputs.items()}
        m = len(next(iter(chunk.values())))
        if m < batch_size:       # MXNet executors are bound to one shape: pad the last batch
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - m, 0)]) for k, v in chunk.items()}
        out.append(run(chunk)[:m])
    return np.concatenate(out)


def ua(y, pred, k):
    from emotion_mx.training.metrics import unweighted_accuracy
    return unweighted_accuracy(np.asarray(y), np.asarray(pred), k)


def params_and_macs(net, fp32_dir):
    from emotion_mx.models.summary import count_macs
    # every array of the encoder, as in results.md's cost table (Whisper's position table, BN statistics)
    n = sum(int(np.prod(p.shape)) for p in net.encoder.collect_params().values())
    sidecar = A.read_sidecar(fp32_dir)
    sym, _, _ = A.load_symbol_params(fp32_dir)
    macs, _ = count_macs(sym, {i["name"]: tuple([1] + i["shape"][1:]) for i in sidecar["inputs"]})
    return n, macs


def ort_int8(fp32_onnx, out_path, calib, valid, ref_valid, reduce_range=False):
    """ORT QDQ INT8, the widest op set whose validation agreement reaches the floor;
    ``reduce_range``: each op set also with 7-bit weights (listed, chosen the same way)."""
    tried, best = [], None
    options = [(ops, rr) for ops in ORT_OP_SETS for rr in ((False, True) if reduce_range else (False,))]
    for k, (ops, rr) in enumerate(options):
        path = f"{out_path}.{k}"
        quantize_onnx(fp32_onnx, path, calib, op_types=ops, reduce_range=rr)
        agree = float(np.mean(batched(OrtRunner(path), valid).argmax(1) == ref_valid.argmax(1)))
        tried.append(("all" if ops is None else "+".join(ops)) + (" (7-bit weights)" if rr else ""))
        tried[-1] = (tried[-1], agree)
        if best is None or agree > best[1] or agree >= AGREEMENT_FLOOR:
            best = (path, agree, tried[-1][0])
        if agree >= AGREEMENT_FLOOR:
            break
    os.replace(best[0], out_path)
    return best[2], tried


def fmt(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def structure_line(label, s):
    att = sum(1 for n in s["int8"] if "selfatt" in n)
    return (f"{label}: {len(s['int8']) - att} Dense/Conv INT8" + (f" + {att} attention matmuls INT8" if att else "")
            + f", {len(s['fp32'])} kept fp32 ({', '.join(s['fp32']) or '-'}); quantize/requantize/dequantize "
            f"nodes {s['quantize']}/{s['requantize']}/{s['dequantize']}")


def run_encoder(name, args, tmp, out):
    import mxnet as mx
    from emotion_mx.models.whisper import with_attention
    from emotion_mx.pretrained.loader import encoder_info
    kind = encoder_info(name)["kind"]
    lengths = LENGTHS[kind]
    sampling = dict(stride=args.stride) if args.stride else SAMPLING[kind]
    inputs, labels, groups = E.real_inputs(kind, args.data, lengths=lengths, **sampling)
    classes = sorted(set(labels))
    y = np.array([classes.index(c) for c in labels])
    train, valid, test = E.group_split(groups)
    take = lambda idx: {k: v[idx] for k, v in inputs.items()}  # noqa: E731
    mx.random.seed(0)
    net, spec = E.encoder_classifier(name, num_classes=len(classes), labels=classes, **lengths)
    net.encoder.hybridize(static_alloc=True)
    feats = E.pooled_features(net, inputs)
    E.fit_head(net, feats, y, train, valid)
    names = A.input_names(spec.modalities)
    d32, d8, d8i = (os.path.join(tmp, f"{name}_{k}") for k in ("fp32", "int8", "int8_interleaved"))
    A.export_block(net, spec, d32)
    onnx_summary = export_onnx(d32)
    fp32_sym = A.load_symbol_params(d32)
    ref_valid = batched(Runner(*fp32_sym, {k: (32,) + v.shape[1:] for k, v in inputs.items()}, backend="fused"),
                        take(valid))
    rng = np.random.RandomState(0)
    pick = np.sort(rng.choice(train, min(CALIB_ITEMS, len(train)), replace=False))
    calib = [take(pick[i:i + CALIB_BATCH]) for i in range(0, len(pick), CALIB_BATCH)]
    chosen = E.choose_int8(d32, d8, calib, take(valid))
    variants = {"MXNet INT8": d8}
    if kind == "whisper":       # the same encoder with oneDNN's interleaved (INT8-capable) attention
        enc = net.encoder
        net.encoder = with_attention(enc, "interleaved")
        d32i = os.path.join(tmp, f"{name}_fp32_interleaved")
        A.export_block(net, spec, d32i)
        net.encoder = enc
        c = next(c for c in chosen["candidates"] if c["label"] == chosen["chosen"])
        info = E.quantize_exported(d32i, d8i, calib, exclude=c["exclude"], excluded_ops=c["excluded_ops"])
        variants["MXNet INT8 + interleaved attention"] = d8i
        chosen["interleaved_structure"] = info["structure"]
    onnx8 = os.path.join(tmp, f"{name}_int8.onnx")
    ort_ops, ort_tried = ort_int8(os.path.join(d32, A.ONNX_MODEL), onnx8, calib, take(valid), ref_valid,
                                  reduce_range=args.ort_reduce_range)

    def runners(shapes):
        r = {"MXNet fp32": GluonRunner(net, names)}
        for label, d in variants.items():
            r[label] = Runner(*A.load_symbol_params(d), shapes)
        r["ORT fp32"] = OrtRunner(os.path.join(d32, A.ONNX_MODEL))
        r["ORT INT8"] = OrtRunner(onnx8)
        return r

    # agreement and UA on the test groups
    test_x, k = take(test), len(classes)
    preds = {label: batched(run, test_x) for label, run in runners({n: (32,) + v.shape[1:] for n, v in inputs.items()}).items()}
    base = preds["MXNet fp32"].argmax(1)
    quality = {label: (ua(y[test], p.argmax(1), k), float(np.mean(p.argmax(1) == base))) for label, p in preds.items()}
    # latency
    rows = []
    for bs in args.batch_sizes:
        batch = {n: np.resize(v, (bs,) + v.shape[1:]) for n, v in test_x.items()}
        res = compare_latency(runners({n: v.shape for n, v in batch.items()}), batch, rounds=args.rounds,
                              repeats=args.repeats if bs == 1 else max(1, args.repeats // 2))
        base_r = res["MXNet fp32"]["rounds"]
        for label, r in res.items():
            rows.append((bs, label, fmt(r["rounds"]), fmt([b / t for b, t in zip(base_r, r["rounds"])])))
    n_params, macs = params_and_macs(net, d32)
    corpus = {"whisper": "EmoDB", "minilm": "ISEAR", "fer": "CK+48"}[kind]
    lines = [f"\n### {name}\n",
             f"{n_params / 1e6:.2f} M encoder parameters (all arrays); {macs / 1e9:.2f} GMAC per item "
             f"(input {', '.join(f'{i}: {list(s)}' for i, s in spec.inputs.items())}); {corpus}: "
             f"{len(train)}/{len(valid)}/{len(test)} train/valid/test items by group, {k} classes; "
             f"ORT fp32 vs MXNet max |logit diff| {onnx_summary['max_abs_diff_vs_mxnet']:.1e} (|logits| up to "
             f"{onnx_summary['max_abs_output']:.0f}, random inputs)\n",
             "| batch | runtime | ms | speed-up vs MXNet fp32 | test UA | test agreement with fp32 |",
             "|---|---|---|---|---|---|"]
    for bs, label, ms, ratio in rows:
        q_ua, agree = quality[label]
        lines.append(f"| {bs} | {label} | {ms} | {ratio}x | {q_ua:.3f} | {agree:.3f} |")
    lines.append("")
    lines.append("- MXNet INT8 candidates (validation agreement): " + "; ".join(
        f"{c['label']}: " + (f"{c['argmax_agreement']:.3f}" if "argmax_agreement" in c else f"skipped ({c['skipped']})")
        for c in chosen["candidates"]) + f" -> kept: {chosen['chosen']}")
    c = next(c for c in chosen["candidates"] if c["label"] == chosen["chosen"])
    lines.append("- " + structure_line("MXNet INT8", c["structure"]))
    if "interleaved_structure" in chosen:
        lines.append("- " + structure_line("MXNet INT8 + interleaved attention", chosen["interleaved_structure"]))
    lines.append("- ORT INT8 op sets (validation agreement): " + ", ".join(f"{o}: {a:.3f}" for o, a in ort_tried)
                 + f" -> kept: {ort_ops}")
    text = "\n".join(lines)
    print(text, flush=True)
    out.append(text)
    if args.profile:
        out.append(profile(name, d32, variants, test_x))


def profile(name, d32, variants, test_x):
    from runtimes import op_profile
    os.environ["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"     # per operator, not per bulked segment
    batch = {n: v[:1] for n, v in test_x.items()}
    shapes = {n: v.shape for n, v in batch.items()}
    runs = {"MXNet fp32 (oneDNN-fused symbol)": Runner(*A.load_symbol_params(d32), shapes, backend="fused")}
    runs.update({label: Runner(*A.load_symbol_params(d), shapes) for label, d in variants.items()})
    parts = []
    for label, run in runs.items():
        rows, total = op_profile(run, batch, calls=10, top=8)
        parts.append(f"\nPer-operator profile, {name}, {label}, batch 1 (ms per forward; total {total:.2f} ms):\n")
        parts.append("| operator | calls | ms | share |\n|---|---|---|---|")
        parts += [f"| {op} | {n} | {ms:.3f} | {share:.0f} % |" for op, n, ms, share in rows]
    os.environ.pop("MXNET_EXEC_BULK_EXEC_INFERENCE", None)
    text = "\n".join(parts)
    print(text, flush=True)
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", default=",".join(DEFAULT), help=f"comma list of {', '.join(ALL)} or 'all'")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=4, help="calls per runtime per round at batch 1 (half at 32)")
    p.add_argument("--stride", type=int, help="take every k-th item of the corpus (default: see SAMPLING)")
    p.add_argument("--batch-sizes", default="1,32", type=lambda v: [int(b) for b in v.split(",")])
    p.add_argument("--ort-reduce-range", action="store_true",
                   help="also try ORT INT8 with 7-bit weights (its remedy for U8S8 saturation without VNNI)")
    p.add_argument("--profile", action="store_true", help="MXNet per-operator tables, fp32 vs INT8 (batch 1)")
    p.add_argument("--data", default=os.environ.get("EMOTION_MX_DATA"), help="shared data folder (EMOTION_MX_DATA)")
    p.add_argument("--markdown", help="also write the tables to this file")
    args = p.parse_args()
    logging.getLogger().setLevel(logging.ERROR)      # onnxruntime.quantization's pre-processing advice
    if not args.data:
        p.error("set EMOTION_MX_DATA or pass --data")
    names = ALL if args.encoders == "all" else tuple(args.encoders.split(","))
    cpu = cpu_info()
    head = (f"# Pretrained encoders: {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags'])}); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; medians (min..max) over {args.rounds} "
            f"interleaved rounds")
    print(head, flush=True)
    out = [head]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            run_encoder(name, args, tmp, out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
