"""INT8 post-training quantization of a run (oneDNN), calibrated on the training split.

    python tools/quantize.py --run RUN --data STORE --calib-mode naive|entropy \
        [--calib-batches N] [--exclude NAME ...] [--no-search] [--agreement-floor F] --out DIR [--fold K]

The layers kept fp32 are chosen by measurement unless ``--no-search``: of the candidate
exclusion sets (``deploy.quantize.INT8_CANDIDATES``) whose arg-max agreement with fp32 on the
validation split reaches ``--agreement-floor``, the fastest at ``--batch-size``.

Writes DIR/{model-symbol.json, model-0000.params, model.json} (INT8, same layout as export)
and DIR/quant_report.json (fp32 plain/fused vs INT8 latency, sizes, validation UA/accuracy, peak
resident memory).  Quiet by default: one progress line per candidate on stderr; ``--verbose``
keeps every log line (MXNet's and ONNX Runtime's quantization logs included).
"""
import contextlib
import json
import logging
import time

import click

from ..deploy.quantize import AGREEMENT_FLOOR
from ..provenance import write_command


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Training run folder.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store the run was trained on.")
@click.option("--calib-mode", type=click.Choice(["naive", "entropy"]), default="naive", show_default=True)
@click.option("--calib-batches", default=8, show_default=True, type=click.IntRange(1),
              help="Training-split batches used for calibration.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1),
              help="Calibration batch size; also the large batch size timed in the report.")
@click.option("--exclude", multiple=True, metavar="NAME",
              help="Keep layers fp32: block prefix, op name or glob (repeatable).")
@click.option("--search/--no-search", default=True, show_default=True,
              help="Choose the layers kept fp32 by measured agreement and speed (else only --exclude).")
@click.option("--agreement-floor", default=AGREEMENT_FLOOR, show_default=True, type=click.FloatRange(0, 1),
              help="Least arg-max agreement with fp32 on the validation split for a candidate to be timed.")
@click.option("--fallback-steps", default=16, show_default=True, type=click.IntRange(0),
              help="With the search: at most this many most-sensitive layers go back to fp32 when no set reaches "
                   "the floor (0: no per-layer fallback; it costs one calibration per layer).")
@click.option("--fold", default=0, show_default=True, type=click.IntRange(0))
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(3), help="Timed runs per latency figure.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the INT8 model.")
@click.option("--verbose", is_flag=True, help="Every log line (MXNet / ONNX Runtime quantization logs included).")
def main(run_dir, data_dir, calib_mode, calib_batches, batch_size, exclude, search, agreement_floor, fallback_steps,
         fold, repeats, out_dir, verbose):
    from emotion_mx.deploy.pipeline import quantize_run
    t0 = time.time()

    def progress(line):
        click.echo(f"[{time.time() - t0:5.0f} s] {line}", err=True)

    with contextlib.nullcontext() if verbose else _quiet():
        report = quantize_run(run_dir, data_dir, out_dir, calib_mode=calib_mode, calib_batches=calib_batches,
                              batch_size=batch_size, exclude=exclude, fold=fold, repeats=repeats,
                              search=search, floor=agreement_floor, fallback_steps=fallback_steps, progress=progress)
    write_command(out_dir)
    click.echo(json.dumps(report["summary"], indent=2))
    peak = report["peak_rss_mb"]
    click.echo(f"peak resident memory {peak['max']:.0f} MB (this process {peak['self']:.0f} MB, children "
               f"{peak['children']:.0f} MB); {report['seconds']:.0f} s", err=True)


@contextlib.contextmanager
def _quiet():
    """Warnings and errors only (the per-candidate progress lines are printed, not logged)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)

