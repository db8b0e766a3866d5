"""Peak resident memory and wall time of the INT8 search on a pretrained encoder graph.

    nice -n 10 .venv/bin/python benchmarks/quantize_memory.py [--encoder whisper_tiny_en] \\
        [--calib-batches 8] [--batch-size 32] [--valid 64] [--fallback-steps 16] [--pretrained]

Builds the classifier graph a pretrained run exports (:func:`emotion_mx.deploy.encoders.encoder_classifier`,
random weights unless ``--pretrained``: memory depends on the graph and the batch shapes, not
on the weight values), exports it, and runs :func:`emotion_mx.deploy.quantize.search_int8` on
random contract inputs at the export lengths (Whisper: 200 frames x 80 mel bins) — the search
``emotion-mx quantize`` runs.  Prints one progress line per candidate, then the peak resident
memory of this process (``resource.getrusage``) and the wall time.  Random weights and inputs
usually miss the agreement floor, so the per-layer fallback (the costly part) runs too.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emotion_mx import artifacts as A  # noqa: E402
from emotion_mx.deploy.encoders import LENGTHS, encoder_classifier  # noqa: E402
from emotion_mx.deploy.onnx_export import random_inputs  # noqa: E402
from emotion_mx.deploy.pipeline import cpu_info, peak_rss_mb  # noqa: E402
from emotion_mx.deploy.quantize import search_int8  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="whisper_tiny_en")
    p.add_argument("--calib-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--valid", type=int, default=64, help="validation items for the agreement")
    p.add_argument("--fallback-steps", type=int, default=16)
    p.add_argument("--floor", type=float, default=None,
                   help="agreement floor (default the search's; above 1 forces the per-layer fallback, the worst case)")
    p.add_argument("--pretrained", action="store_true", help="the checkpoint's weights (downloads it)")
    args = p.parse_args()
    cpu = cpu_info()
    print(f"# {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags'])}); "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    t0 = time.time()
    net, spec = encoder_classifier(args.encoder, pretrained=args.pretrained, **LENGTHS)
    with tempfile.TemporaryDirectory() as tmp:
        sidecar = A.export_block(net, spec, tmp)
        sym, params, aux = A.load_symbol_params(tmp)
    names = [i["name"] for i in sidecar["inputs"]]
    calib = [random_inputs(sidecar, batch_size=args.batch_size, seed=s) for s in range(args.calib_batches)]
    valid = random_inputs(sidecar, batch_size=args.valid, seed=99)
    print(f"graph built and exported: {time.time() - t0:.0f} s, peak {peak_rss_mb()['self']:.0f} MB", flush=True)

    def progress(line):
        print(f"[{time.time() - t0:5.0f} s, peak {peak_rss_mb()['self']:6.0f} MB] {line}", flush=True)

    kw = {} if args.floor is None else {"floor": args.floor}
    *_, info = search_int8(sym, params, aux, names, calib, valid, batch_size=args.batch_size,
                           fallback_steps=args.fallback_steps, progress=progress, **kw)
    s = info["search"]
    peak = peak_rss_mb()
    print(f"\n{args.encoder} ({'checkpoint' if args.pretrained else 'random'} weights), {args.calib_batches}x"
          f"{args.batch_size} calibration items, {args.valid} validation items, fallback steps "
          f"{args.fallback_steps}, floor {s['floor']}: chosen '{s['chosen']}' ({s['reason']}); {len(s['candidates'])} candidates, "
          f"{s['calibration_passes']} calibration pass(es); peak resident memory {peak['max']:.0f} MB; "
          f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
