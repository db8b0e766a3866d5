"""INT8 post-training quantization: graph structure, exclusions, report, tool errors."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.deploy import pipeline
from emotion_mx.deploy.quantize import graph_nodes, is_quantized, quantize_symbol, quantized_members
from emotion_mx.deploy.testing import make_run, synthetic_inputs
from emotion_mx.errors import EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP32_ONLY = {"batch_dot", "softmax", "LayerNorm"}


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("run"))
    make_run(run, "mid_tiny")
    net, spec = A.load_run_model(run)
    names = A.input_names(spec["modalities"])
    sym = A.trace_symbol(net, names)
    args, aux = A.block_arrays(net, sym)
    return run, spec, names, sym, args, aux


@pytest.fixture(scope="module")
def quantized(fp32):
    run, spec, names, sym, args, aux = fp32
    calib = [synthetic_inputs(spec, batch_size=16, seed=s) for s in range(3)]
    return quantize_symbol(sym, args, aux, names, calib, calib_mode="naive", exclude=["mid_head_"])


def test_operators_quantized_and_kept_fp32(quantized):
    qsym, qargs, qaux, info = quantized
    nodes = [n for n in graph_nodes(qsym) if n["op"] != "null"]
    q_ops = {n["op"] for n in nodes if is_quantized(n)}
    assert {"_sg_mkldnn_fully_connected", "_sg_mkldnn_conv"} <= q_ops
    assert "_contrib_quantized_embedding" in q_ops
    # attention matmuls, softmax and LayerNorm stay fp32
    for n in nodes:
        if n["op"] in FP32_ONLY:
            assert not is_quantized(n)
    assert FP32_ONLY <= {n["op"] for n in nodes}
    members = quantized_members(qsym)
    assert members["mid_text_enc_transformer_layer0_attn_query_fwd"] is True
    # user exclusion by block prefix: the classifier head stays fp32
    head = {k: v for k, v in members.items() if k.startswith("mid_head_")}
    assert head and not any(head.values())
    assert any(r == "--exclude mid_head_" for r in info["excluded"].values())
    # automatic exclusions (patterns that crash MXNet 1.9.1) stay fp32 and are explained
    for name, reason in info["excluded"].items():
        assert not members.get(name, False), name
        assert reason
    # weights of quantized layers are int8 in the params
    assert any(v.dtype == np.int8 for v in qargs.values())


def _has_vnni():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# oneDNN's int8 kernels on AVX2 without VNNI accumulate u8 x s8 products in saturating int16
# (vpmaddubsw): on this model the largest logit error then reaches about half the logit scale
# (measured on a 2-core AVX2 EPYC, 0.64 against a scale of 1.28), so the bound below holds only
# where VNNI is there. The test still runs, and reports, everywhere.
@pytest.mark.xfail(not _has_vnni(), reason="INT8 without VNNI saturates in oneDNN's AVX2 kernels", strict=False)
def test_int8_runs_close_to_fp32(fp32, quantized):
    from emotion_mx.deploy.runtime import Runner
    run, spec, names, sym, args, aux = fp32
    qsym, qargs, qaux, _ = quantized
    x = synthetic_inputs(spec, batch_size=16, seed=11)
    shapes = {n: x[n].shape for n in names}
    ref = Runner(sym, args, aux, shapes, backend="fused")(x)
    got = Runner(qsym, qargs, qaux, shapes)(x)
    assert np.isfinite(got).all()
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 0.25 * scale + 1e-3


def test_search_int8_keeps_the_fastest_faithful_candidate(fp32):
    from emotion_mx.deploy.quantize import INT8_CANDIDATES, search_int8
    run, spec, names, sym, args, aux = fp32
    calib = [synthetic_inputs(spec, batch_size=16, seed=s) for s in range(2)]
    valid = synthetic_inputs(spec, batch_size=24, seed=7)
    *_, info = search_int8(sym, args, aux, names, calib, valid, floor=0.0, batch_size=8, rounds=2, repeats=2)
    s = info["search"]
    labels = [c["label"] for c in s["candidates"]]
    assert labels == [c["label"] for c in INT8_CANDIDATES if c["label"] in labels] and len(labels) >= 4
    timed = [c for c in s["candidates"] if "ms" in c]
    assert len(timed) == len(labels)                       # floor 0: every candidate is timed
    from emotion_mx.deploy.quantize import TIE
    fastest = min(c["ms"] for c in timed)
    assert s["chosen"] == next(c["label"] for c in timed if c["ms"] <= fastest * (1 + TIE))
    assert s["reason"].startswith("fastest")
    # calibrated once, reused by every candidate (issue 25: bounded memory and time)
    assert 1 <= s["calibration_passes"] < len(labels)
    # "convolutions only": every Dense of mid_tiny stays fp32, its convolutions run INT8
    conv = next(c for c in s["candidates"] if c["label"].startswith("convolutions only"))
    assert conv["structure"]["int8"] and all("conv" in n for n in conv["structure"]["int8"])
    assert conv["structure"]["fp32"] and all("fully_connected" in n for n in conv["structure"]["fp32"])
    everything = s["candidates"][0]
    assert len(everything["structure"]["int8"]) > len(conv["structure"]["int8"])
    # an unreachable floor: the most sensitive layers of the most faithful candidate go back to
    # fp32 one by one (2 steps here), nothing is timed, the most faithful is kept and said so
    *_, info = search_int8(sym, args, aux, names, calib, valid, floor=1.01, batch_size=8, exclude=["mid_head_"],
                           fallback_steps=2)
    s = info["search"]
    assert not any("ms" in c for c in s["candidates"]) and s["reason"].startswith("none reached")
    assert s["chosen"] == max(s["candidates"], key=lambda c: c["argmax_agreement"])["label"]
    assert all(c["exclude"][0] == "mid_head_" for c in s["candidates"])   # the user's exclusion in every set
    fb = s["candidates"][-1]
    base = max(s["candidates"][:-1], key=lambda c: c["argmax_agreement"])
    assert fb["label"].startswith(base["label"]) and "2 most sensitive layers" in fb["label"]
    sens = list(fb["sensitivity"].items())
    assert len(sens) >= 10 and all(a[1] >= b[1] for a, b in zip(sens, sens[1:]))   # worst first
    assert fb["exclude"] == base["exclude"] + [sens[0][0], sens[1][0]]
    # at least those two go back to fp32 (a neighbour may follow: a layer whose output then feeds
    # both an INT8 and an fp32 op is kept fp32 automatically, see unsafe_nodes)
    assert len(fb["structure"]["fp32"]) >= len(base["structure"]["fp32"]) + 2
    with pytest.raises(EmotionMXError, match="unknown INT8 selection"):
        search_int8(sym, args, aux, names, calib, valid, select="best")


def test_unknown_exclusion_is_an_error(fp32):
    run, spec, names, sym, args, aux = fp32
    with pytest.raises(EmotionMXError, match="matches no layer"):
        quantize_symbol(sym, args, aux, names, [synthetic_inputs(spec, 4)], exclude=["no_such_block"])


def test_quantize_run_writes_model_and_report(fp32, tmp_path, monkeypatch):
    run, spec, names, *_ = fp32

    def fake_split(run_dir, spec_, data_dir, fold, split):
        n = 64 if split == "train" else 40
        x = synthetic_inputs(spec_, batch_size=n, seed=1 if split == "train" else 2)
        return x, np.arange(n) % spec_["num_classes"]

    monkeypatch.setattr(pipeline, "load_split", fake_split)
    from emotion_mx.deploy import ort_runtime
    monkeypatch.setattr(ort_runtime, "ORT_OP_SETS", (None, ("Gemm",)))   # two candidates keep it short
    import functools
    from emotion_mx.deploy.quantize import INT8_CANDIDATES, search_int8
    monkeypatch.setattr(pipeline, "search_int8", functools.partial(search_int8, candidates=INT8_CANDIDATES[:2]))
    out = str(tmp_path / "int8")
    report = pipeline.quantize_run(run, "unused-store", out, calib_mode="entropy", calib_batches=2,
                                   batch_size=16, repeats=3, floor=0.0)   # floor 0: every set timed, no fallback
    on_disk = json.load(open(os.path.join(out, A.QUANT_REPORT)))
    assert on_disk["summary"] == json.loads(json.dumps(report["summary"]))
    for bs in ("batch1", "batch16"):
        for k in ("fp32_plain", "fp32_fused", "int8"):
            assert report["latency_ms"][bs][k]["median_ms"] > 0
        assert report["latency_ms"][bs]["speedup_int8_vs_fused"] > 0
    p = report["params"]
    assert p["int8_bytes"] < p["fp32_bytes"] and 0 < p["ratio"] < 1
    v = report["validation"]
    assert v["samples"] == 40 and 0 <= v["fp32"]["ua"] <= 1 and 0 <= v["int8"]["ua"] <= 1
    assert 0 <= v["argmax_agreement"] <= 1 and "ua_loss_points" in v
    goals = report["goals"]
    assert goals.pop("kind") == "multimodal fusion"            # mid_tiny: the fusion goals (issue 16)
    assert {k: g["goal"] for k, g in goals.items()} == {"speedup_vs_fused_batch32": 1.5, "speedup_vs_fused_batch1": 1.2,
                                                        "params_ratio": 0.3, "ua_loss_points": 1.0}
    assert goals["speedup_vs_fused_batch32"]["value"] == report["latency_ms"]["batch16"]["speedup_int8_vs_fused"]
    assert goals["params_ratio"]["met"] == (p["ratio"] <= 0.3)
    assert report["quantization"]["calib_mode"] == "entropy" and report["quantization"]["split"] == "train"
    # the layers kept fp32 were chosen by measurement, and the choice is recorded in both files
    search = report["int8_search"]
    assert search["chosen"] == report["quantization"]["chosen"] == on_disk["quantization"]["chosen"]
    assert report["summary"]["int8_layers"]["chosen"] == search["chosen"]
    assert len(report["summary"]["int8_layers"]["candidates"]) == len(search["candidates"])
    assert report["cpu"]["cores"] >= 1
    assert report["peak_rss_mb"]["max"] >= report["peak_rss_mb"]["self"] > 0
    assert report["summary"]["peak_rss_mb"] == report["peak_rss_mb"]["max"]
    # the INT8 directory has the export layout and reloads in Gluon
    block, sidecar = A.load_exported(out)
    assert sidecar["precision"] == "int8" and sidecar["quantization"]["calib_examples"] == 32
    x = synthetic_inputs(spec, batch_size=2)
    assert block(*[mx.nd.array(x[n]) for n in names]).shape == (2, 4)
    # ORT INT8 from the same calibration batches, beside it, with its accuracy and a runtime record
    ort8 = report["onnxruntime_int8"]
    assert 0 <= ort8["int8"]["ua"] <= 1 and len(ort8["candidates"]) == 2
    assert ort8["fp32_ort_max_abs_logit_diff_vs_mxnet"] <= 1e-4
    assert ort8["precision"] in ("int8", "fp32") and ort8["reason"]
    if ort8["precision"] == "int8":    # kept only when measured faster than ORT fp32 here
        _check_qdq(os.path.join(out, A.ONNX_MODEL), ort8["op_types"])
        chosen = [c for c in ort8["candidates"] if c["op_types"] == ort8["op_types"]][0]
        assert chosen["speedup_vs_ort_fp32"] > 1 and chosen["argmax_agreement"] == ort8["argmax_agreement"]
    else:
        assert "ONNX Runtime runs the fp32 graph" in ort8["reason"]
        assert not _qdq_ops(os.path.join(out, A.ONNX_MODEL))
    from emotion_mx.deploy.ort_runtime import read_record
    record = read_record(out)
    assert record["precision"] == "int8" and record["measured_at"] == "quantize"
    assert set(record["latency_ms"]) == {"batch1", "batch16"}
    assert report["summary"]["runtime"].startswith(record["choice"])


def _qdq_ops(path):
    """Op types ORT runs in INT8 in a QDQ graph: every input comes from a DequantizeLinear and
    every output goes only to QuantizeLinear nodes (the DQ→op→Q units ORT fuses)."""
    import onnx
    g = onnx.load(path).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = set()
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        ins = [i for i in n.input if i]
        if ins and all(i in producer and producer[i].op_type == "DequantizeLinear" for i in ins) and \
                all(consumers.get(o) and all(c.op_type == "QuantizeLinear" for c in consumers[o]) for o in n.output):
            out.add(n.op_type)
    return out


def _check_qdq(path, op_types):
    """Structure of an ORT QDQ INT8 graph: int8 weights behind DequantizeLinear, only the allowed
    op types quantized."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    weights = [inits[n.input[0]] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weights and any(w.dtype == np.int8 for w in weights)
    q_ops = _qdq_ops(path)
    assert q_ops
    if op_types != "all":
        # element-wise glue between two quantized layers (a residual Add of two convolutions, a
        # ReLU after the conv ORT folds it into) sits between DQ and Q too: ORT runs it in INT8
        assert q_ops - {"Relu", "Add"} <= set(op_types) and "Softmax" not in q_ops, q_ops
    return q_ops


def test_ort_int8_op_sets_structure(fp32, tmp_path):
    """Restricting ORT quantization to Gemm leaves every other op (attention MatMuls included)
    on fp32 inputs; the unrestricted graph quantizes MatMul too."""
    from emotion_mx.deploy.onnx_export import export_onnx
    from emotion_mx.deploy.ort_runtime import OrtRunner, quantize_onnx
    run, spec, names, *_ = fp32
    d = str(tmp_path / "fp32")
    A.export_run(run, d)
    export_onnx(d)
    calib = [synthetic_inputs(spec, batch_size=8, seed=s) for s in range(2)]
    found = {}
    for ops in (("Gemm", "Conv"), None):
        path = quantize_onnx(os.path.join(d, A.ONNX_MODEL), str(tmp_path / f"q{len(ops or ())}.onnx"), calib,
                             op_types=ops)
        found[ops] = _check_qdq(path, "all" if ops is None else list(ops))
        assert OrtRunner(path)(calib[0]).shape == (8, 4)
    assert "MatMul" in found[None] and "MatMul" not in found[("Gemm", "Conv")]


def test_quantize_cli_error_is_one_line(fp32, tmp_path):
    run = fp32[0]
    proc = subprocess.run([sys.executable, "tools/quantize.py", "--run", run, "--data", str(tmp_path / "nostore"),
                           "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "does not exist" in last


# ---------------------------------------------------------------------------------------------
# ORT INT8 kept only where measured faster than ORT fp32 (issue 25)
# ---------------------------------------------------------------------------------------------

def test_choose_ort_graph_keeps_int8_only_when_faster():
    from emotion_mx.deploy.ort_runtime import choose_ort_graph
    cands = [{"op_types": "all", "argmax_agreement": 0.5, "speedup_vs_ort_fp32": 3.0},      # unfaithful
             {"op_types": ["Conv", "Gemm"], "argmax_agreement": 0.99, "speedup_vs_ort_fp32": 1.4},
             {"op_types": ["Gemm"], "argmax_agreement": 0.98, "speedup_vs_ort_fp32": 1.7}]
    assert choose_ort_graph(cands, floor=0.97)[0] == 2
    slow = [dict(c, speedup_vs_ort_fp32=0.8) for c in cands]
    keep, why = choose_ort_graph(slow, floor=0.97)
    assert keep is None and "0.80x ORT fp32" in why and "fp32 graph" in why
    keep, why = choose_ort_graph([dict(c, argmax_agreement=0.1) for c in cands], floor=0.97)
    assert keep is None and "agreement floor" in why


def _fake_timer(int8_ms):
    def timer(runners, batch, rounds=3, repeats=5):
        return {k: {"median_ms": 10.0 if k == "fp32" else int8_ms} for k in runners}
    return timer


@pytest.mark.parametrize("int8_ms,precision", [(5.0, "int8"), (20.0, "fp32")])
def test_quantize_onnx_run_ships_the_faster_graph(fp32, tmp_path, monkeypatch, int8_ms, precision):
    """With a stubbed timer: INT8 twice as fast → model.onnx is the QDQ graph; INT8 twice as slow
    → model.onnx is the fp32 graph and the report says why."""
    from emotion_mx.deploy import ort_runtime
    from emotion_mx.deploy.runtime import predict
    run, spec, names, sym, args, aux = fp32
    monkeypatch.setattr(ort_runtime, "ORT_OP_SETS", (("Gemm",),))
    net, spec_ = A.load_run_model(run)
    calib = [synthetic_inputs(spec, batch_size=8, seed=s) for s in range(2)]
    valid = synthetic_inputs(spec, batch_size=12, seed=5)
    ref = predict(sym, args, aux, names, valid, backend="fused")
    out = tmp_path / "o"
    out.mkdir()
    monkeypatch.setattr(ort_runtime, "AGREEMENT_FLOOR", 0.0)
    entry = ort_runtime.quantize_onnx_run(net, spec_, str(out), calib, valid, np.arange(12) % 4, ref,
                                          batch_size=8, timer=_fake_timer(int8_ms))
    assert entry["precision"] == precision
    cand = entry["candidates"][0]
    assert cand["ms"] == {"batch1": int8_ms, "batch8": int8_ms} and cand["speedup_vs_ort_fp32"] == 10.0 / int8_ms
    q_ops = _qdq_ops(str(out / A.ONNX_MODEL))
    assert bool(q_ops) == (precision == "int8")
    assert entry["threads"].startswith("intra-op threads") and "spinning off" in entry["threads"]


def test_reduce_range_only_without_vnni():
    from emotion_mx.deploy.ort_runtime import needs_reduce_range
    assert needs_reduce_range(["avx2"]) is True
    assert needs_reduce_range(["avx2", "avx512f", "avx512_vnni"]) is False
    assert needs_reduce_range(["avx2", "avx_vnni"]) is False
    assert needs_reduce_range([]) is False        # not x86 AVX2 (e.g. ARM): ORT's default


def test_ort_thread_settings(monkeypatch):
    from emotion_mx.deploy.ort_runtime import default_threads, session_options
    monkeypatch.delenv("EMOTION_MX_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert default_threads(1) == cores and default_threads(cores * 4) == 1
    opts = session_options(threads=3)
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(threads=1, spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    monkeypatch.setenv("EMOTION_MX_THREADS", "5")
    assert default_threads(2) == 5
    monkeypatch.setenv("EMOTION_MX_THREADS", "two")
    with pytest.raises(EmotionMXError, match="EMOTION_MX_THREADS='two': expected a positive integer"):
        default_threads()
