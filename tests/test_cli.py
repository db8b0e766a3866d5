"""The `emotion-mx` command group, the tools/ shims, `--set`, `base:` composition, the one YAML
loader, provenance (command.json) and packaging (a fresh venv: `pip install .[serve]`)."""
import glob
import json
import os
import platform
import runpy
import subprocess
import sys
import sysconfig
import time

import click
import pytest
import yaml
from click.testing import CliRunner

from emotion_mx.cli import main as group, run_cli
from emotion_mx.commands import COMMANDS, Verb
from emotion_mx.config import DatasetConfig, _Loader, config_path, load_config, parse_sets, to_dict
from emotion_mx.errors import ConfigError
from emotion_mx.provenance import COMMAND_FILE, write_command
from emotion_mx.search.config import SearchConfig, load_search_config
from emotion_mx.training.config import TrainConfig, load_train_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
CORE_VERBS = [v for v, spec in COMMANDS.items() if spec.tool]


def _run(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def _one_error_line(proc):
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# -- the group and the shims ---------------------------------------------------------------------

def test_group_lists_every_verb():
    res = CliRunner().invoke(group, ["--help"])
    assert res.exit_code == 0, res.output
    for verb in ("build", "train", "evaluate", "crossval", "distill", "export", "quantize", "predict",
                 "stream", "search", "cpp-predict", "model-summary", "launch", "demo", "serve", "embed",
                 "live"):
        assert verb in COMMANDS and f"  {verb} " in res.output, verb
    assert "[serve]" in res.output and "[pretrained]" in res.output
    # every tools/*.py script is one of the verbs
    tools = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "tools", "*.py"))}
    assert tools == {spec.tool for spec in COMMANDS.values() if spec.tool}


@pytest.mark.parametrize("verb", CORE_VERBS)
def test_shim_runs_the_package_command(verb):
    spec = COMMANDS[verb]
    shim = runpy.run_path(os.path.join(ROOT, "tools", spec.tool))["main"]
    command = group.get_command(click.Context(group), verb)
    assert shim is command and isinstance(command, click.Command)
    code = [ln for ln in open(os.path.join(ROOT, "tools", spec.tool)).read().splitlines()
            if ln.strip() and not ln.startswith(("#", '"""'))]
    assert len(code) == 4, code                    # two imports, if __name__ == "__main__": run_cli(main)
    res = CliRunner().invoke(group, [verb, "--help"])
    assert res.exit_code == 0 and res.output.startswith(f"Usage: emotion-mx {verb} "), res.output


def test_help_and_predict_import_only_what_they_need():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom emotion_mx.cli import main\n"
            "for args in (['--help'], ['predict', '--help'], ['train', '--help']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('emotion_mx', 'mxnet'))))")
    p = _run("-c", code)
    assert p.returncode == 0, p.stderr
    loaded = set(p.stdout.split())
    assert "emotion_mx.commands.predict" in loaded and "emotion_mx.commands.train" in loaded
    assert not {m for m in loaded if m.startswith(("mxnet", "emotion_mx.training", "emotion_mx.search",
                                                   "emotion_mx.models", "emotion_mx.commands.search"))}, loaded


def test_python_m_and_tool_give_the_same_error_line(tmp_path):
    missing = str(tmp_path / "no-store")
    a = _one_error_line(_run("-m", "emotion_mx", "evaluate", "--run", str(tmp_path), "--data", missing))
    b = _one_error_line(_run("tools/evaluate.py", "--run", str(tmp_path), "--data", missing))
    assert a == b
    p = _run("-m", "emotion_mx", "--help")
    assert p.returncode == 0 and p.stdout.startswith("Usage: python -m emotion_mx ")
    p = _run("-m", "emotion_mx", "no-such-verb")
    assert p.returncode == 2 and "No such command 'no-such-verb'" in p.stderr


def _invoke(args):
    try:
        run_cli(group, args=args, prog_name="emotion-mx")
    except SystemExit as e:
        return e.code
    return 0


def test_verb_without_its_module_or_dependency_names_the_extra(monkeypatch, tmp_path, capsys):
    (tmp_path / "needs_missing_dep.py").write_text("import no_such_dependency_xyz\nimport click\n"
                                                   "cmd = click.Command('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "absent", Verb("emotion_mx.no_such_module:serve", "Not merged.", extra="serve"))
    monkeypatch.setitem(COMMANDS, "nodep", Verb("needs_missing_dep:cmd", "Missing dep.", extra="pretrained"))
    for verb, extra, what in (("absent", "serve", "emotion_mx.no_such_module"),
                              ("nodep", "pretrained", "no_such_dependency_xyz")):
        for args in ([verb, "--model", "x"], [verb, "--help"]):
            assert _invoke(args) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: 'emotion-mx {verb}' is not available"), err
            assert f"pip install 'emotion_mx[{extra}]'" in err[0] and what in err[0]


def test_missing_optional_import_is_one_line():
    from emotion_mx.optional import MissingExtra, require
    assert require("json", "serve").dumps([1]) == "[1]"
    with pytest.raises(MissingExtra, match=r"^ONNX export needs the optional 'onnx' dependencies \(.*"
                                           r"no_such_onnx.*\); install them with pip install 'emotion_mx\[onnx\]'$"):
        require("no_such_onnx", "onnx", "ONNX export")


# -- the one YAML loader, --set and base: --------------------------------------------------------

def _w(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_training_and_search_loaders_read_numbers_alike(tmp_path):
    train = load_train_config(_w(tmp_path / "t.yaml", "optim: {lr: 1e-4, wd: 5E-3}\n"))
    assert train.optim.lr == 1e-4 and train.optim.wd == 5e-3
    search = load_search_config(_w(tmp_path / "s.yaml", "base: {optim: {lr: 1e-4}}\n"
                                   "space: {optim.wd: {real: [1e-5, 1e-2], log: true}}\n"))
    assert search.base.optim.lr == 1e-4 and search.space["optim.wd"].real == (1e-5, 1e-2)


@pytest.mark.parametrize("text, message", [
    ("epochs: 3\noptim: {lr: 0.1}\nepochs: 4\n", "duplicate key 'epochs' (line 3)"),
    ("optim:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' (line 3)"),
    ("model: &m {name: mid_tiny, kwargs: {inner: *m}}\n", "alias *m refers to the node it is part of (line 1)"),
    ("data: &d {modalities: [audio, *d]}\n", "alias *d refers to the node it is part of (line 1)"),
])
def test_loader_refuses_duplicates_and_self_references(tmp_path, text, message):
    path = _w(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_train_config(path)
    assert str(e.value) == f"{path}: {message}"


def test_merge_keys_and_plain_aliases_still_work(tmp_path):
    path = _w(tmp_path / "ok.yaml", "x: &o {lr: 0.5, wd: 0.0}\noptim:\n  <<: *o\n  lr: 0.25\n"
                                    "augment: {time_masks: 1}\n")
    # 'x' is not a TrainConfig key: the anchor parses, the unknown key is the config's error
    with pytest.raises(ConfigError, match="unknown key 'x'"):
        load_train_config(path)
    data = yaml.load(open(path), Loader=_Loader)
    assert data["optim"] == {"lr": 0.25, "wd": 0.0}


def test_base_composition_relative_nested_and_cycles(tmp_path):
    _w(tmp_path / "recipes" / "root.yaml", "model: {name: mid_tiny, kwargs: {dropout: 0.2}}\n"
                                           "optim: {lr: 0.002, wd: 0.001}\nepochs: 30\n")
    _w(tmp_path / "recipes" / "mid.yaml", "base: root.yaml\ndata: {modalities: [audio, text]}\n")
    variant = _w(tmp_path / "runs" / "v.yaml", "base: ../recipes/mid.yaml\nmodel: {kwargs: {units: 16}}\n"
                                               "optim: {lr: 1e-3}\n")
    cfg = load_train_config(variant)
    assert cfg.model.name == "mid_tiny" and dict(cfg.model.kwargs) == {"dropout": 0.2, "units": 16}
    assert (cfg.optim.lr, cfg.optim.wd, cfg.epochs, cfg.data.modalities) == (1e-3, 0.001, 30, ("audio", "text"))
    # cycles: a file extending itself, and a -> b -> a
    selfref = _w(tmp_path / "self.yaml", "base: self.yaml\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"self.yaml: 'base:' chain comes back to this file \(self.yaml -> self.yaml\)"):
        load_train_config(selfref)
    _w(tmp_path / "a.yaml", "base: b.yaml\n")
    _w(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"'base:' chain comes back to this file \(a.yaml -> b.yaml -> a.yaml\)"):
        load_train_config(str(tmp_path / "a.yaml"))
    with pytest.raises(ConfigError, match=r"gone.yaml: base file 'nowhere.yaml' not found"):
        load_train_config(_w(tmp_path / "gone.yaml", "base: nowhere.yaml\n"))
    # the base's own errors name the base file
    _w(tmp_path / "broken.yaml", "optim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        load_train_config(_w(tmp_path / "uses_broken.yaml", "base: broken.yaml\n"))


def test_shipped_configs_resolve_as_before_composition():
    """configs/ collapsed into bases + small variants: every file resolves to exactly the
    config it resolved to before (tests/fixtures/resolved_configs.json, captured from the
    uncomposed files)."""
    before = json.load(open(os.path.join(HERE, "fixtures", "resolved_configs.json")))
    assert len(before) >= 28
    for rel, want in before.items():
        path = os.path.join(ROOT, rel)
        if rel.startswith("configs/train/"):
            got = load_train_config(path)
        elif rel.startswith("configs/datasets/"):
            got = load_config(path, DatasetConfig)
        else:
            got = load_search_config(path)
        assert json.loads(json.dumps(to_dict(got))) == want, rel
    variants = [p for p in glob.glob(os.path.join(ROOT, "configs", "train", "**", "*.yaml"), recursive=True)
                if "base" in (yaml.safe_load(open(p)) or {})]
    assert len(variants) >= 14


def test_set_parses_checks_and_names_the_key():
    sets = ["optim.lr=1e-4", "data.modalities=[audio, text]", "model.kwargs.dropout=0.3", "patience=null",
            "model.kwargs.audio_channels=[8, 16]"]
    assert parse_sets(TrainConfig, sets) == {
        "optim": {"lr": 1e-4}, "data": {"modalities": ["audio", "text"]}, "patience": None,
        "model": {"kwargs": {"dropout": 0.3, "audio_channels": [8, 16]}}}
    cfg = load_train_config(os.path.join(ROOT, "configs", "train", "emodb_audio.yaml"), sets=sets)
    assert cfg.optim.lr == 1e-4 and cfg.data.modalities == ("audio", "text") and cfg.patience is None
    assert cfg.optim.wd == 0.001                              # the rest comes from the file
    for bad, msg in (("optim.lrr=1", "--set optim.lrr=1: unknown key 'optim.lrr' (valid keys here: "
                                     "optim.clip_gradient, optim.lr,"),
                     ("nope=1", "--set nope=1: unknown key 'nope' (valid keys here: augment, batch_size,"),
                     ("epochs", "--set epochs: expected dotted.key=value"),
                     ("epochs=abc", "--set: 'epochs' must be an integer, got 'abc'"),
                     ("epochs.x=1", "--set epochs.x=1: 'epochs' has no sub-keys"),
                     ("optim=1", "--set optim=1: 'optim' is a section; set one of its keys (optim.optimizer"),
                     ("optim.lr=[1", "--set optim.lr=[1: not valid YAML")):
        with pytest.raises(ConfigError) as e:
            parse_sets(TrainConfig, [bad])
        assert str(e.value).startswith(msg) and "\n" not in str(e.value), (bad, str(e.value))
    # a value the config rejects after merging names the file and --set
    with pytest.raises(ConfigError, match=r"emodb_audio.yaml with --set: optim.lr must be > 0"):
        load_train_config(os.path.join(ROOT, "configs", "train", "emodb_audio.yaml"), sets=["optim.lr=-1"])
    # other config types: dataset and search (a free-form mapping key may contain dots)
    ds = load_config(os.path.join(ROOT, "configs", "datasets", "emodb.yaml"), DatasetConfig,
                     sets=["audio.n_mels=40", "labels.map.W=anger"])
    assert ds.audio.n_mels == 40 and ds.labels.map == {"W": "anger"} and ds.corpus == "emodb"
    sc = parse_sets(SearchConfig, ["space.optim.lr={real: [1e-4, 1e-2], log: true}", "budget.epochs=2"])
    assert sc == {"space": {"optim.lr": {"categorical": None, "real": [1e-4, 1e-2], "log": True,
                                         "default": None, "int": None}}, "budget": {"epochs": 2}}


def test_bad_set_is_one_error_line_on_every_config_command(tmp_path, capsys):
    missing = str(tmp_path / "none")
    cfgs = {"train": os.path.join(ROOT, "configs", "train", "demo.yaml"),
            "search": os.path.join(ROOT, "configs", "search", "demo.yaml")}
    for args in (["train", "--data", missing, "--out", missing],
                 ["crossval", "--data", missing, "--out", missing],
                 ["build", "--corpus", "manifest", "--root", missing, "--out", missing],
                 ["distill", "--teacher", missing, "--student", "mid_student", "--data", missing,
                  "--out", missing, "--config", cfgs["train"]],
                 ["search", "--config", cfgs["search"], "--data", missing, "--trials", "1", "--out", missing]):
        assert _invoke(args + ["--set", "optim.lrr=0.1"]) == 2, args        # in-process: the group
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
        assert len(err) == 1, (args, err)
        assert err[0].startswith(("error: --set optim.lrr=0.1: unknown key 'optim.lrr'",
                                  "error: --set optim.lrr=0.1: unknown key 'optim'")), (args, err)
    assert _invoke(["distill", "--teacher", missing, "--student", "mid_student", "--data", missing,
                    "--out", missing, "--set", "epochs=1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --set needs --config (the student's training YAML)"
    # and through a shim, in its own process
    line = _one_error_line(_run("tools/train.py", "--data", missing, "--out", missing, "--set", "epochs=x"))
    assert line == "error: --set: 'epochs' must be an integer, got 'x'"


def test_shipped_config_paths_resolve_outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = config_path("configs/train/demo.yaml")
    assert os.path.isfile(path) and os.path.samefile(path, os.path.join(ROOT, "configs", "train", "demo.yaml"))
    assert load_train_config("configs/train/trimodal_experts/mid_cross.yaml").model.kwargs["cross_expert"] is True
    assert config_path("configs/train/nope.yaml") == "configs/train/nope.yaml"
    (tmp_path / "configs" / "train").mkdir(parents=True)
    (tmp_path / "configs" / "train" / "demo.yaml").write_text("epochs: 1\n")      # a local file wins
    assert load_train_config("configs/train/demo.yaml").epochs == 1


# -- provenance and the --set path into a run folder -----------------------------------------------

def test_write_command_appends_invocations(tmp_path):
    write_command(str(tmp_path), ["emotion-mx", "train", "--set", "optim.lr=1e-4"])
    write_command(str(tmp_path), ["emotion-mx", "train", "--resume"])
    rec = json.load(open(tmp_path / COMMAND_FILE))
    assert rec["format"] == 1 and [r["argv"][-1] for r in rec["invocations"]] == ["optim.lr=1e-4", "--resume"]
    one = rec["invocations"][0]
    assert one["command"] == "emotion-mx train --set optim.lr=1e-4"
    assert set(one["versions"]) == {"emotion_mx", "mxnet", "numpy", "python"}
    assert one["versions"]["numpy"] == __import__("numpy").__version__
    assert one["versions"]["mxnet"] == __import__("mxnet").__version__
    if os.path.isdir(os.path.join(ROOT, ".git")) or os.path.isfile(os.path.join(ROOT, ".git")):
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert one["git"]["commit"] == head


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, replace
    from emotion_mx.demo import make_demo_corpus
    base = tmp_path_factory.mktemp("cli_store")
    make_demo_corpus(str(base / "corpus"), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    cfg = load_config(os.path.join(ROOT, "configs", "datasets", "demo.yaml"), DatasetConfig)
    cfg = replace(cfg, align=AlignConfig(enabled=False))
    build_dataset(cfg.corpus, str(base / "corpus"), str(base / "store"), cfg=cfg, workers=1, progress=False)
    return str(base / "store")


def test_set_reaches_the_run_folder_and_command_json(tiny_store, tmp_path):
    variant = _w(tmp_path / "cfg" / "variant.yaml",
                 "base: ../base.yaml\nmodel: {kwargs: {units: 8}}\n")
    _w(tmp_path / "base.yaml", "model: {name: audio_cnn, kwargs: {dropout: 0.1}}\ndata: {modalities: [audio], "
                               "max_audio_frames: 100}\nepochs: 3\nbatch_size: 8\n")
    run = str(tmp_path / "run")
    args = ["tools/train.py", "--config", variant, "--data", tiny_store, "--out", run, "--quiet",
            "--set", "epochs=1", "--set", "optim.lr=1e-4", "--set", "model.kwargs.dropout=0.3"]
    p = _run(*args)
    assert p.returncode == 0, p.stderr[-3000:]
    resolved = yaml.safe_load(open(os.path.join(run, "config.yaml")))
    assert resolved["epochs"] == 1 and resolved["optim"]["lr"] == 1e-4 and resolved["batch_size"] == 8
    assert resolved["model"]["kwargs"] == {"dropout": 0.3, "units": 8}
    rec = json.load(open(os.path.join(run, COMMAND_FILE)))["invocations"]
    assert len(rec) == 1 and rec[0]["argv"] == args and rec[0]["versions"]["python"] == platform.python_version()
    out = str(tmp_path / "export")
    p = _run("-m", "emotion_mx", "export", "--run", run, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.load(open(os.path.join(out, COMMAND_FILE)))["invocations"]
    assert rec[0]["argv"][1:] == ["export", "--run", run, "--out", out]
    assert rec[0]["command"].startswith("python -m emotion_mx export --run ") and rec[0]["python"] == sys.executable


# -- packaging -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_fresh_venv_pip_install_serve_extra(tmp_path, exported_models):
    """`pip install .[serve]` into a fresh venv, then `emotion-mx --help` and `python -m emotion_mx
    --help` from outside the repository, and `emotion-mx serve` from that venv answering a real
    EmoDB clip (a synthetic tone when EMOTION_MX_DATA is unset) over loopback HTTP.  The venv reuses this interpreter's installed
    dependencies through a .pth line (no downloads); emotion_mx itself, its console script and
    its package data come from the new install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    vpy = str(venv / "bin" / "python")
    vsite = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(vsite, "_emotion_mx_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    p = subprocess.run([sys.executable, "-m", "pip", "--python", vpy, "install", "-q", "--no-build-isolation",
                        "--no-index", f"{ROOT}[serve]"], capture_output=True, text=True, env=env, timeout=170,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for cmd in ([str(venv / "bin" / "emotion-mx"), "--help"], [vpy, "-m", "emotion_mx", "--help"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        assert "train" in r.stdout and "serve" in r.stdout and "cpp-predict" in r.stdout
    probe = ("import emotion_mx, emotion_mx.config as c; print(emotion_mx.__file__); "
             "print(c.config_path('configs/train/trimodal/late.yaml'))")
    r = subprocess.run([vpy, "-c", probe], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    module_file, shipped = r.stdout.split()
    assert module_file.startswith(vsite) and shipped.startswith(vsite), r.stdout
    r = subprocess.run([str(venv / "bin" / "emotion-mx"), "train", "--config", "configs/train/trimodal/late.yaml",
                        "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--set", "optim.lrr=1"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: --set optim.lrr=1: unknown key 'optim.lrr'"), r.stderr
    assert os.path.isfile(os.path.join(os.path.dirname(module_file), "..",
                                       "emotion_mx-0.1.0.dist-info", "licenses", "LICENSE"))
    # the service, from the fresh install, on an exported audio model
    import httpx
    from emotion_mx.serve.testing import free_port
    data = os.environ.get("EMOTION_MX_DATA", "")
    wavs = sorted(glob.glob(os.path.join(data, "emodb", "wav", "*.wav"))) if data else []
    if wavs:
        clip = wavs[0]
    else:
        from emotion_mx.inference.testing import tone_wave, write_wav
        clip = str(tmp_path / "tone.wav")
        write_wav(clip, tone_wave(2.0), 16000)
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([str(venv / "bin" / "emotion-mx"), "serve", "--model", exported_models["audio"],
                               "--host", "127.0.0.1", "--port", str(port)], cwd=str(tmp_path), env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(400):
            assert server.poll() is None, open(tmp_path / "serve.log").read()[-2000:]
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        with open(clip, "rb") as f:
            r = httpx.post(url + "/predict", files={"audio": ("clip.wav", f, "audio/wav")}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert httpx.get(url + "/model", timeout=10).status_code == 200
        assert body["label"] in body["probabilities"] and abs(sum(body["probabilities"].values()) - 1) < 1e-4
    finally:
        server.terminate()
        server.wait(20)
        log.close()
