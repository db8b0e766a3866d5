#!/usr/bin/env python
"""fp32 plain vs oneDNN-fused vs INT8 latency, params size, and C++ vs Python at batch 1.

    python benchmarks/int8_cpp.py --fp32 EXPORT_DIR --int8 INT8_DIR [--cpp-build DIR] [--repeats N]

Inputs are synthetic (contract-conforming, shapes from the sidecar): latency does not depend on
values.  The C++ figure is emotion_predict --bench (forward + output copy); the Python figure
is a bound executor doing the same (forward + asnumpy).  Without --cpp-build the wrapper is
built into a temporary folder first.
"""
import json
import os
import tempfile

import click

from emotion_mx.cli import run_cli


@click.command()
@click.option("--fp32", "fp32_dir", required=True, type=click.Path(exists=True), help="tools/export.py output")
@click.option("--int8", "int8_dir", required=True, type=click.Path(exists=True), help="tools/quantize.py output")
@click.option("--cpp-build", default=None, type=click.Path(), help="Existing cpp_deploy build folder")
@click.option("--repeats", default=50, show_default=True, type=click.IntRange(3))
@click.option("--batch", "batches", multiple=True, type=int, default=(1, 32), show_default=True)
@click.option("--json-out", default=None, type=click.Path(), help="Also write the figures as JSON")
def main(fp32_dir, int8_dir, cpp_build, repeats, batches, json_out):
    from emotion_mx import artifacts as A
    from emotion_mx.deploy import cpp
    from emotion_mx.deploy.pipeline import cpu_info
    from emotion_mx.deploy.runtime import Runner
    from emotion_mx.deploy.testing import synthetic_inputs

    fp32, int8 = A.load_symbol_params(fp32_dir), A.load_symbol_params(int8_dir)
    sidecar = A.read_sidecar(fp32_dir)
    res = {"cpu": cpu_info(), "model": sidecar["model"]["name"], "latency_ms": {}, "params_bytes": {}}
    click.echo(f"model {res['model']}  cpu {res['cpu']['model']} x{res['cpu']['cores']} {res['cpu']['flags']}")
    click.echo(f"{'batch':>5} {'fp32 plain':>11} {'fp32 fused':>11} {'int8':>8} {'int8/fused':>11}")
    for bs in batches:
        x = synthetic_inputs(sidecar, batch_size=bs, seed=0)
        shapes = {k: v.shape for k, v in x.items()}
        row = {name: Runner(*graph, shapes, backend=be).latency_ms(x, repeats=repeats)["median_ms"]
               for name, graph, be in (("fp32_plain", fp32, "plain"), ("fp32_fused", fp32, "fused"),
                                       ("int8", int8, "asis"))}
        res["latency_ms"][f"batch{bs}"] = row
        click.echo(f"{bs:>5} {row['fp32_plain']:>11.3f} {row['fp32_fused']:>11.3f} {row['int8']:>8.3f} "
                   f"{row['fp32_fused'] / row['int8']:>10.2f}x")
    for label, d in (("fp32", fp32_dir), ("int8", int8_dir)):
        res["params_bytes"][label] = os.path.getsize(os.path.join(d, A.EXPORT_PARAMS))
    ratio = res["params_bytes"]["int8"] / res["params_bytes"]["fp32"]
    click.echo(f"params: fp32 {res['params_bytes']['fp32'] / 1e6:.3f} MB, int8 {res['params_bytes']['int8'] / 1e6:.3f} MB "
               f"({ratio:.2f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        binary = cpp.find_binary(cpp_build) or cpp.build(os.path.join(tmp, "build"))
        x = synthetic_inputs(sidecar, batch_size=1, seed=0)
        click.echo(f"{'batch 1':>8} {'python ms':>10} {'c++ ms':>8} {'c++ p95':>8}")
        res["cpp_vs_python_batch1"] = {}
        for label, d, graph in (("fp32", fp32_dir, fp32), ("int8", int8_dir, int8)):
            py = Runner(*graph, {k: v.shape for k, v in x.items()}).latency_ms(x, repeats=repeats)["median_ms"]
            lat = cpp.run(binary, d, x, bench=repeats)["latency_ms"]
            res["cpp_vs_python_batch1"][label] = {"python_ms": py, "cpp_ms": lat["median"], "cpp_p95_ms": lat["p95"],
                                                  "cpp_create_ms": lat["create"]}
            click.echo(f"{label:>8} {py:>10.3f} {lat['median']:>8.3f} {lat['p95']:>8.3f}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    run_cli(main)
