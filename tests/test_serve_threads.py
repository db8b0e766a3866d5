"""Thread settings of a multi-worker service (issue 25 item 4): each worker's ONNX Runtime
sessions and MXNet OMP pool get usable cores / workers intra-op threads."""
import os
import shutil

import pytest

from emotion_mx.errors import EmotionMXError
from emotion_mx.serve.settings import THREADS_ENV, ServeSettings


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


@pytest.fixture(scope="module")
def onnx_model(exported_models, tmp_path_factory):
    from emotion_mx.deploy.onnx_export import export_onnx
    d = str(tmp_path_factory.mktemp("threads") / "audio_onnx")
    shutil.copytree(exported_models["audio"], d)
    export_onnx(d)
    return d


def test_settings_threads_are_cores_over_workers(two_cores, monkeypatch):
    assert ServeSettings(model="m").session_threads() == 2
    two = ServeSettings(model="m", workers=2)
    assert two.session_threads() == 1 and two.worker_env() == {"OMP_NUM_THREADS": "1", THREADS_ENV: "1"}
    assert ServeSettings(model="m", workers=4).session_threads() == 1          # never 0
    assert ServeSettings(model="m", workers=2, threads=2).session_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "3")                                       # the documented override
    assert ServeSettings(model="m", workers=2).worker_env()["OMP_NUM_THREADS"] == "3"
    for bad in (0, -1, 1.5):
        with pytest.raises(EmotionMXError, match="expected a positive integer"):
            ServeSettings(model="m", threads=bad)


@pytest.mark.parametrize("workers,want", [(2, 1), (1, 2)])
def test_engine_sessions_get_the_settings_threads(two_cores, onnx_model, workers, want):
    """settings → the worker's ORT runner: 2 workers on 2 cores → 1 intra-op thread per session."""
    from emotion_mx.serve.engine import Engine, Faults
    engine = Engine(ServeSettings(model=onnx_model, workers=workers, runtime="onnxruntime", warmup=False),
                    faults=Faults())
    engine.load()
    try:
        runner = engine.primary.rec._model.ort
        assert runner.threads == want
        assert runner.session.get_session_options().intra_op_num_threads == want
        assert runner.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning") == "0"
        assert engine.primary.describe()["threads"] == want
    finally:
        engine.close()
    assert THREADS_ENV not in os.environ          # the loading environment was restored


def test_serve_command_sets_worker_threads_before_uvicorn(two_cores, onnx_model, monkeypatch):
    """`emotion-mx serve --workers 2`: OMP_NUM_THREADS and EMOTION_MX_THREADS are 1 in the
    environment uvicorn's workers inherit (MXNet reads OMP_NUM_THREADS when it is imported)."""
    import uvicorn
    from click.testing import CliRunner
    from emotion_mx.serve.command import serve
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(
        {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", THREADS_ENV)}, workers=kw["workers"]))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})  # not leaked
    r = CliRunner().invoke(serve, ["--model", onnx_model, "--workers", "2", "--runtime", "onnxruntime"])
    assert r.exit_code == 0, r.output
    assert seen == {"OMP_NUM_THREADS": "1", THREADS_ENV: "1", "workers": 2}
    r = CliRunner().invoke(serve, ["--model", onnx_model, "--threads", "0"])
    assert r.exit_code == 2 and "--threads" in r.output
