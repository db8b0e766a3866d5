"""--amp's precision probe (emotion_mx.training.amp.probe_precision / decide_precision) with a
stubbed timer: which precision it keeps, the line it prints, and the fallbacks that skip it."""
import mxnet as mx
import pytest

from emotion_mx.training import amp as A

from test_training_run import store  # noqa: F401  (the tiny demo store fixture)

PROBE = dict(model="audio_cnn", kwargs={"audio_dim": 8, "audio_frames": 16}, modalities=["audio"], num_classes=4,
             inputs={"audio": [16, 8], "audio_mask": [16]}, batch_size=4)
BF16 = {"avx512f", "avx512_bf16"}


def stub(rates):
    """measure(job) returning rates[precision] (a float, or an Exception to raise); records jobs."""
    jobs = []

    def measure(job):
        jobs.append(job)
        r = rates[job["precision"]]
        if isinstance(r, Exception):
            raise r
        return r
    measure.jobs = jobs
    return measure


def test_bf16_slower_keeps_fp32_and_says_so():
    m = stub({"float32": 100.0, "bfloat16": 60.0, "bfloat16-mxnet": 80.0})
    choice, line = A.probe_precision(measure=m, rounds=2, **PROBE)
    assert choice == "float32"
    assert "fp32 100.0 samples/s" in line and "0.60x" in line and "0.80x" in line
    assert "training in float32 (bfloat16 was slower" in line
    # interleaved rounds: every precision once per round, in order
    assert [j["precision"] for j in m.jobs] == list(A.PROBE_CHOICES) * 2


def test_bf16_faster_is_kept_with_the_fastest_op_lists():
    choice, line = A.probe_precision(measure=stub({"float32": 100.0, "bfloat16": 130.0, "bfloat16-mxnet": 160.0}),
                                     **PROBE)
    assert choice == "bfloat16-mxnet" and line.endswith("training in bf16 (MXNet op lists) (1.60x fp32)")
    choice, _ = A.probe_precision(measure=stub({"float32": 100.0, "bfloat16": 150.0, "bfloat16-mxnet": 90.0}),
                                  **PROBE)
    assert choice == "bfloat16"


def test_within_margin_keeps_fp32_and_medians_decide():
    choice, line = A.choose_precision({"float32": [100.0, 100.0], "bfloat16": [101.0, 102.0]})
    assert choice == "float32" and "noise margin" in line
    # one slow outlier round does not decide: median of 3
    choice, _ = A.choose_precision({"float32": [100.0, 100.0, 100.0], "bfloat16": [150.0, 10.0, 140.0]})
    assert choice == "bfloat16"
    with pytest.raises(ValueError):
        A.choose_precision({"bfloat16": [1.0]})


def test_failed_bf16_candidate_is_dropped_and_named_fp32_failure_raises():
    m = stub({"float32": 100.0, "bfloat16": RuntimeError("could not create a primitive"), "bfloat16-mxnet": 120.0})
    choice, line = A.probe_precision(measure=m, rounds=2, **PROBE)
    assert choice == "bfloat16-mxnet" and "bf16 (project op lists) failed (could not create a primitive)" in line
    assert [j["precision"] for j in m.jobs].count("bfloat16") == 1        # not retried
    with pytest.raises(RuntimeError):
        A.probe_precision(measure=stub({"float32": RuntimeError("x"), "bfloat16": 1.0, "bfloat16-mxnet": 1.0}),
                          **PROBE)


def test_no_bf16_cpu_keeps_the_one_line_fallback_without_probing(monkeypatch):
    monkeypatch.setattr(A, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2", "fma"})
    m = stub({})
    precision, lines = A.decide_precision(True, [mx.cpu()], PROBE, measure=m)
    assert precision == "float32" and len(lines) == 1 and lines[0].startswith("--amp: float16 needs a GPU")
    assert m.jobs == []
    assert A.decide_precision(False, [mx.cpu()], PROBE, measure=m, flags=BF16) == ("float32", [])
    assert m.jobs == []


def test_decide_probes_on_bf16_cpu_but_not_on_resume_or_distributed():
    m = stub({"float32": 100.0, "bfloat16": 50.0, "bfloat16-mxnet": 50.0})
    precision, lines = A.decide_precision(True, [mx.cpu()], PROBE, flags=BF16, measure=m)
    assert precision == "float32" and lines[-1].startswith("--amp probe")
    n = len(m.jobs)
    precision, lines = A.decide_precision(True, [mx.cpu()], PROBE, flags=BF16, measure=m, recorded="bfloat16")
    assert precision == "bfloat16" and "resuming in bfloat16" in lines[-1] and len(m.jobs) == n
    precision, lines = A.decide_precision(True, [mx.cpu()], PROBE, flags=BF16, measure=m, distributed=True)
    assert precision == "bfloat16" and "distributed" in lines[-1] and len(m.jobs) == n


def test_probe_job_runs_in_a_child_process():
    """The real measurement: a child process trains audio_cnn for a step and reports samples/s."""
    job = dict(PROBE, kwargs=dict(PROBE["kwargs"]), steps=1, precision="float32", hybridize=True)
    assert A._measure_child(job) > 0
    with pytest.raises(RuntimeError):
        A._measure_child(dict(job, model="no_such_model"))


_RUN = """
import json, sys
sys.path.insert(0, {here!r})
from emotion_mx.training import amp, train
from test_training_run import _tiny_cfg
out, pick, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"
amp._measure_child = lambda job: 200.0 if job["precision"] == pick else 100.0     # the probe's timer, stubbed
lines = []

def echo(msg):
    lines.append(str(msg))
    if kill and str(msg).startswith("epoch 1:"):
        print(json.dumps(lines)); sys.exit(0)              # after the epoch-1 checkpoint, like a SIGKILL
train(_tiny_cfg(), {store!r}, out, fold=0, amp=True, resume=sys.argv[4] == "resume", progress=False, echo=echo)
print(json.dumps(lines))
"""


def test_amp_resume_keeps_the_probed_precision_and_equals_an_uninterrupted_run(store, tmp_path):
    """--amp, probe picks bf16; killed after epoch 1; resumed while the (stubbed) probe would now
    pick fp32: the run continues in its recorded precision and ends as the uninterrupted run."""
    import json
    import os
    import subprocess
    import sys
    import numpy as np
    from emotion_mx import artifacts
    from emotion_mx.training.checkpoint import latest_checkpoint
    here = os.path.dirname(os.path.abspath(__file__))
    script = _RUN.format(here=here, store=store)
    bf16 = A.resolve_precision(True, [mx.cpu()])[0] == "bfloat16"

    def run(out, pick, kill=False, resume=False):
        p = subprocess.run([sys.executable, "-c", script, str(out), pick, "kill" if kill else "-",
                            "resume" if resume else "-"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])
    a, b = tmp_path / "a", tmp_path / "b"
    lines = run(a, "bfloat16")
    if bf16:
        assert any(ln.startswith("--amp probe") and ln.endswith("(2.00x fp32)") for ln in lines), lines
    run(b, "bfloat16", kill=True)
    assert latest_checkpoint(str(b)).endswith("epoch-0001")
    lines = run(b, "float32", resume=True)
    want = "bfloat16" if bf16 else "float32"
    assert artifacts.load_model_spec(str(a))["precision"] == artifacts.load_model_spec(str(b))["precision"] == want
    if bf16:
        assert "--amp: resuming in bfloat16, the precision the run started with" in lines
    pa = mx.nd.load(latest_checkpoint(str(a)) + ".params")
    pb = mx.nd.load(latest_checkpoint(str(b)) + ".params")
    assert latest_checkpoint(str(b)).endswith("epoch-0002") and pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pb[k].asnumpy(), pa[k].asnumpy(), atol=1e-5, err_msg=k)
