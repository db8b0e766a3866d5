"""Architecture search (emotion_mx.search, tools/search.py) on a tiny synthetic store: a local
three-trial search with a sorted leaderboard whose best config retrains to the same validation
score, restart after an interruption, invalid YAML, searcher availability, and a Ray search."""
import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from emotion_mx.errors import ConfigError, EmotionMXError
from emotion_mx.search import load_search_config, run_search, to_autogluon_space
from emotion_mx.training.config import load_train_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(progress=False, echo=lambda *a, **k: None)

SEARCH = {
    "base": {"model": {"name": "mid_tiny"},
             "data": {"modalities": ["audio", "text", "video"], "max_audio_frames": 200, "max_tokens": 12},
             "optim": {"lr": 0.002}, "batch_size": 4, "patience": None, "seed": 0},
    "space": {"model.name": {"categorical": ["mid_tiny", "early_tiny"]},
              "model.kwargs.dropout": {"real": [0.0, 0.3]},
              "optim.lr": {"real": ["1e-4", "1e-2"], "log": True, "default": 0.002}},
    "budget": {"epochs": 2},
}


def _write(path, data):
    with open(path, "w") as f:
        if isinstance(data, str):
            f.write(data)
        else:
            yaml.safe_dump(data, f)
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    from emotion_mx.build import build_dataset
    from emotion_mx.config import DatasetConfig, FaceConfig, SplitConfig
    from emotion_mx.demo import make_demo_corpus
    base = tmp_path_factory.mktemp("search-store")
    make_demo_corpus(str(base / "corpus"), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    cfg = DatasetConfig(corpus="manifest", face=FaceConfig(detect=False, num_frames=4),
                        splits=SplitConfig(folds=3), shard_size=4)
    build_dataset("manifest", str(base / "corpus"), str(base / "store"), cfg=cfg, progress=False)
    return str(base / "store")


@pytest.fixture(scope="module")
def search_yaml(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("search-cfg") / "search.yaml", SEARCH)


@pytest.fixture(scope="module")
def searched(store, search_yaml, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("search") / "out")
    return run_search(load_search_config(search_yaml), store, out, trials=3, **QUIET)


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_local_search_leaderboard_and_best_config_reproduces(searched, store, tmp_path):
    out = searched.out_dir
    assert len(searched.records) == 3 and searched.trained == 3
    assert all(r["status"] == "ok" and r["backend"] == "local" for r in searched.records)
    for name in ("trials.jsonl", "leaderboard.csv", "leaderboard.md", "best.yaml", "scores.png", "search.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "leaderboard.csv")) as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["valid_ua"]) for r in rows]
    assert len(rows) == 3 and scores == sorted(scores, reverse=True)
    assert rows[0]["trial_id"] == searched.best["trial_id"]
    md = open(os.path.join(out, "leaderboard.md")).read()
    assert md.count("\n| ") == 4 and "model.name" in md      # header + 3 rows
    # the first trial is autogluon's default point: first category, the given lr default, lower dropout
    first = searched.records[0]["params"]
    assert first == {"model.name": "mid_tiny", "model.kwargs.dropout": 0.0, "optim.lr": 0.002}
    for rec in searched.records:
        assert os.path.isfile(os.path.join(out, rec["run_dir"], "best.params"))
        assert json.load(open(os.path.join(out, rec["run_dir"], "best.json")))["split"] == "valid"

    best_yaml = os.path.join(out, "best.yaml")
    cfg = load_train_config(best_yaml)                          # a full TrainConfig, accepted as is
    assert cfg.epochs == 2 and cfg.model.name == searched.best["params"]["model.name"]
    run = str(tmp_path / "retrain")
    p = subprocess.run([sys.executable, "tools/train.py", "--config", best_yaml, "--data", store,
                        "--out", run, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    again, orig = _metrics(run), _metrics(os.path.join(out, searched.best["run_dir"]))
    assert len(again) == len(orig) == 2
    for a, b in zip(again, orig):
        for key in ("valid_unweighted_accuracy", "valid_loss", "train_loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), key
    best_json = json.load(open(os.path.join(run, "best.json")))
    assert best_json["metrics"]["unweighted_accuracy"] == pytest.approx(searched.best["valid_ua"], abs=1e-6)


def test_restart_after_interruption_trains_only_the_rest(searched, store, search_yaml, tmp_path, monkeypatch):
    import emotion_mx.training.run as run_mod
    real_train = run_mod.train
    calls = []

    def interrupted_at_third(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt                         # like Ctrl-C during trial 3
        return real_train(*args, **kwargs)

    out = str(tmp_path / "out")
    cfg = load_search_config(search_yaml)
    monkeypatch.setattr(run_mod, "train", interrupted_at_third)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, store, out, trials=3, **QUIET)
    assert sum(1 for _ in open(os.path.join(out, "trials.jsonl"))) == 2

    calls.clear()
    monkeypatch.setattr(run_mod, "train", lambda *a, **k: calls.append(a[2]) or real_train(*a, **k))
    res = run_search(cfg, store, out, trials=3, **QUIET)
    assert len(calls) == 1 and res.trained == 1 and len(res.records) == 3
    # the replayed searcher continues the same seeded sequence as an uninterrupted search
    assert [r["params"] for r in res.records] == [r["params"] for r in searched.records]
    assert [r["valid_ua"] for r in res.records] == pytest.approx([r["valid_ua"] for r in searched.records])

    calls.clear()
    res = run_search(cfg, store, out, trials=3, **QUIET)    # nothing left to do
    assert calls == [] and len(res.records) == 3
    with pytest.raises(EmotionMXError, match="different seed"):
        run_search(cfg, store, out, trials=4, seed=1, **QUIET)


def test_grid_searcher_stops_at_the_grid_size(store, tmp_path):
    cfg = load_search_config(_write(tmp_path / "grid.yaml", {
        **SEARCH, "space": {"model.name": {"categorical": ["mid_tiny", "early_tiny"]}}}))
    notes = []
    res = run_search(cfg, store, str(tmp_path / "out"), trials=5, searcher="grid", progress=False,
                     echo=notes.append)
    assert [r["params"]["model.name"] for r in res.records] == ["mid_tiny", "early_tiny"]
    assert any("grid has 2 configuration" in n for n in notes)


def test_space_conversion_and_searcher_availability(search_yaml, store, tmp_path):
    from autogluon.common import space as ag
    cfg = load_search_config(search_yaml)
    space = to_autogluon_space(cfg)
    assert isinstance(space["model.name"], ag.Categorical) and space["model.name"].data == ["mid_tiny", "early_tiny"]
    assert isinstance(space["optim.lr"], ag.Real) and space["optim.lr"].log and space["optim.lr"].lower == 1e-4
    assert space["optim.lr"].default == 0.002
    with pytest.raises(EmotionMXError, match=r"'bayes' is not available with --scheduler local.*random, grid"):
        run_search(cfg, store, str(tmp_path / "b"), trials=1, searcher="bayes", **QUIET)
    assert not os.path.exists(tmp_path / "b")


@pytest.mark.parametrize("change, message", [
    ({"spaces": {}}, r"unknown key 'spaces'"),
    ({"space": {"optim.lrr": {"real": [0.1, 0.2]}}}, r"unknown search key 'space.optim.lrr'.*optim.lr"),
    ({"space": {"optim.lr": {"real": [0.1, 0.2], "logg": True}}}, r"unknown key 'space.optim.lr.logg'"),
    ({"space": {"optim.lr": {"real": [0.2, 0.1]}}}, r"space.optim.lr: lower bound 0.2 must be below"),
    ({"space": {"optim.lr": {"real": [0.0, 0.1], "log": True}}}, r"log range needs a lower bound > 0"),
    ({"space": {"model.name": {"categorical": ["mid_tiny", "mid_huge"]}}}, r"unknown model 'mid_huge'"),
    ({"space": {"model.kwargs.combine": {"categorical": ["mean"]}}}, r"combine is not accepted by model 'mid_tiny'"),
    ({"space": {"model.kwargs.audio_dim": {"int": [32, 64]}}}, r"audio_dim comes from the feature store"),
    ({"space": {"model.kwargs.text_encoder": {"categorical": ["transformer", "gru"]}}},
     r"space.model.kwargs.text_encoder = 'gru'.*text_encoder must be"),
    ({"space": {"batch_size": {"categorical": [8, 0]}}}, r"space.batch_size = 0.*batch_size must be > 0"),
    ({"space": {}}, r"space is empty"),
    ({"space": {"epochs": {"int": [1, 3]}}}, r"both searched .* and fixed"),
    ({"base": {"optim": {"lrr": 1}}}, r"unknown key 'base.optim.lrr'"),
])
def test_invalid_search_yaml_is_a_clear_error(tmp_path, change, message):
    path = _write(tmp_path / "bad.yaml", {**SEARCH, **change})
    with pytest.raises(ConfigError, match=message) as e:
        load_search_config(path)
    assert str(e.value).startswith(path)


def test_cli_errors_are_one_line(tmp_path, store):
    bad = _write(tmp_path / "bad.yaml", {**SEARCH, "space": {"optim.lrr": {"real": [0.1, 0.2]}}})
    good = _write(tmp_path / "good.yaml", SEARCH)
    for args in (["--config", bad, "--data", store],
                 ["--config", good, "--data", str(tmp_path / "no-store")],
                 ["--config", good, "--data", store, "--searcher", "bayes"],
                 ["--config", good, "--data", store, "--searcher", "grid", "--scheduler", "ray"]):
        p = subprocess.run([sys.executable, "tools/search.py", *args, "--trials", "1", "--out", str(tmp_path / "o")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("error")]
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, (args, p.stderr)


def test_ray_search_two_trials(store, search_yaml, tmp_path):
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as e:     # pragma: no cover - CI installs ray (the [search] extra)
        pytest.skip(f"Ray Tune is not importable ({e}); pip install 'ray[default,tune]==2.10.0' 'pyarrow==17.0.0'")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = str(tmp_path / "ray")
        res = run_search(load_search_config(search_yaml), store, out, trials=2, scheduler="ray", **QUIET)
    finally:
        ray.shutdown()
    assert len(res.records) == 2 and res.trained == 2
    assert all(r["status"] == "ok" and r["backend"] == "ray" for r in res.records)
    assert sorted(os.listdir(os.path.join(out, "trials"))) == sorted(r["trial_id"] for r in res.records)
    with open(os.path.join(out, "leaderboard.csv")) as f:
        scores = [float(r["valid_ua"]) for r in csv.DictReader(f)]
    assert scores == sorted(scores, reverse=True)
    assert load_train_config(os.path.join(out, "best.yaml")).epochs == 2
