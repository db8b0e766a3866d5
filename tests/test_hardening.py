"""Hardening (issue 13): data loss, code execution from files, silent wrong results, tracebacks."""
import os
import subprocess
import sys

import numpy as np
import pytest

from emotion_mx.errors import BadItem, EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- determinism

def test_synthesis_does_not_depend_on_what_was_spoken_before():
    """espeak-ng state used to carry over between syntheses (word alignment differed between
    builds of the same items depending on worker scheduling)."""
    from emotion_mx.features.tts import synthesize
    text = "The quick brown fox jumps over the lazy dog"
    first = synthesize(text, "en+m1")
    synthesize("I am so angry with you, really!", "en+m3")
    synthesize("Hello there, how are you today?", "en+f2")
    again = synthesize(text, "en+m1")
    assert first[1] == again[1] and first[2] == again[2]
    np.testing.assert_array_equal(first[0], again[0])


# ----------------------------------------------------------------------------- the build

import random
import signal
import time

from emotion_mx import store as st
from emotion_mx.build import build_dataset
from emotion_mx.config import DatasetConfig, FaceConfig, SplitConfig
from emotion_mx.demo import make_demo_corpus
from emotion_mx.fileio import read_json
from emotion_mx.manifest import read_manifest, write_manifest

CFG_YAML = "corpus: manifest\nshard_size: 2\nface: {detect: false, num_frames: 4}\nsplits: {folds: 3}\n"
CFG = DatasetConfig(corpus="manifest", face=FaceConfig(detect=False, num_frames=4),
                    splits=SplitConfig(folds=3), shard_size=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    make_demo_corpus(str(root), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    return str(root)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted single-process build."""
    out = str(tmp_path_factory.mktemp("ref"))
    build_dataset("manifest", corpus, out, cfg=CFG, progress=False)
    return out


def _store_contents(out):
    """Every item's arrays and index entry (without shard names): what a store means."""
    index = read_json(os.path.join(out, "index.json"))
    cache = st.ShardCache(out)
    data = {}
    for item_id, entry in sorted(index.items()):
        arrays = {k: np.array(cache.get(entry["shard"], item_id, k)) for k in entry["shapes"]}
        data[item_id] = ({k: v for k, v in entry.items() if k != "shard"}, arrays)
    cache.close()
    for name in ("folds.json", "labels.json", "norm/fold0.json", "vocab/fold0.json"):
        data[name] = read_json(os.path.join(out, name))
    return data


def _assert_same_store(a, b):
    ca, cb = _store_contents(a), _store_contents(b)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        if key.endswith(".json"):
            assert ca[key] == cb[key], key
            continue
        assert ca[key][0] == cb[key][0], key
        assert sorted(ca[key][1]) == sorted(cb[key][1]), key
        for name in ca[key][1]:
            np.testing.assert_array_equal(ca[key][1][name], cb[key][1][name], err_msg=f"{key}/{name}")


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _cli_build(corpus, out, cfg_path, workers=2):
    return [sys.executable, "tools/build_dataset.py", "--config", str(cfg_path), "--root", corpus,
            "--out", str(out), "--quiet", "--workers", str(workers)]


def test_kill_at_random_moments_then_resume_gives_the_uninterrupted_store(corpus, reference, tmp_path):
    """kill -9 of the main process only (what the OOM killer does: its workers must die too and
    write nothing more), then of the whole process group, each at a random moment; the rerun's
    store equals an uninterrupted single-process build, item for item and array for array."""
    rng = random.Random(13)
    out = tmp_path / "store"
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(CFG_YAML)
    cmd = _cli_build(corpus, out, cfg_path)
    for target in ("main", "group"):
        before = len(st.shard_paths(str(out)))
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and len(st.shard_paths(str(out))) <= before and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if target == "main":
            proc.send_signal(signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while _group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        alive = _group_alive(proc.pid)
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)
        assert not alive, f"worker processes outlived the killed build ({target})"
        shards_after_kill = sorted(st.shard_paths(str(out)))
        time.sleep(0.3)
        assert sorted(st.shard_paths(str(out))) == shards_after_kill      # nobody writes any more
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same_store(reference, str(out))
    seen = [i for p in st.shard_paths(str(out)) for i in st.read_shard_meta(p)]
    assert len(seen) == len(set(seen)) == 12


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _workers(pid):
    """The pool's worker processes: children of the build running ``multiprocessing.spawn``."""
    out = []
    for c in _children(pid):
        try:
            cmdline = open(f"/proc/{c}/cmdline", "rb").read()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            out.append(c)
    return out


def test_killed_worker_is_one_line_and_resumable(corpus, reference, tmp_path):
    """A worker killed (e.g. by the OOM killer) used to end the build with a BrokenProcessPool
    traceback."""
    out = tmp_path / "store"
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(CFG_YAML)
    cmd = _cli_build(corpus, out, cfg_path)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not _workers(proc.pid) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)
    os.kill(_workers(proc.pid)[0], signal.SIGKILL)
    err = proc.communicate(timeout=120)[1]
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("INFO", "WARNING"))]
    assert proc.returncode == 2 and len(lines) == 1 and "worker process died" in lines[0], err
    assert "Traceback" not in err
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_same_store(reference, str(out))


def test_second_build_on_the_same_out_fails_with_one_line(corpus, tmp_path):
    out = tmp_path / "store"
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(CFG_YAML)
    first = subprocess.Popen(_cli_build(corpus, out, cfg_path, workers=1), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".build.lock").exists():
        time.sleep(0.02)
    time.sleep(0.3)
    second = subprocess.run(_cli_build(corpus, out, cfg_path, workers=1), cwd=ROOT, capture_output=True, text=True)
    assert first.wait() == 0
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "being built by another process" in lines[0] and f"pid {first.pid}" in lines[0]
    seen = [i for p in st.shard_paths(str(out)) for i in st.read_shard_meta(p)]
    assert len(seen) == len(set(seen)) == 12


def test_shard_written_under_other_settings_is_never_taken_in(corpus, reference, tmp_path):
    """A shard left by a build with other settings (e.g. an orphan worker) is removed, not used."""
    import shutil
    from emotion_mx.config import AudioConfig, replace
    other = replace(CFG, audio=replace(CFG.audio, fmin=100.0))
    out = tmp_path / "store"
    build_dataset("manifest", corpus, str(out), cfg=other, progress=False)
    stale = str(tmp_path / "stale.npz")
    shutil.copy(st.shard_paths(str(out))[0], stale)
    shutil.rmtree(out / "shards")
    for name in os.listdir(out):
        if os.path.isfile(out / name):
            os.unlink(out / name)
    (out / "shards").mkdir()
    shutil.copy(stale, out / "shards" / "shard-old.npz")
    stats = build_dataset("manifest", corpus, str(out), cfg=CFG, progress=False)
    assert stats["resumed_items"] == 0 and stats["items"] == 12
    _assert_same_store(reference, str(out))


def test_edited_media_is_extracted_again(corpus, tmp_path):
    import shutil
    import soundfile as sf
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    out = str(tmp_path / "store")
    build_dataset("manifest", str(root), out, cfg=CFG, progress=False)
    item = read_manifest(str(root / "manifest.jsonl"))[0]
    wave, sr = sf.read(str(root / item.audio), dtype="float32")
    sf.write(str(root / item.audio), wave * 0.25, sr)                       # quieter: other log-mels
    before = np.array(st.ShardCache(out).get(read_json(os.path.join(out, "index.json"))[item.id]["shard"],
                                             item.id, "logmel"))
    stats = build_dataset("manifest", str(root), out, cfg=CFG, progress=False)
    assert stats["resumed_items"] == 10                    # the edited item's shard (2 items) again
    entry = read_json(os.path.join(out, "index.json"))[item.id]
    after = np.array(st.ShardCache(out).get(entry["shard"], item.id, "logmel"))
    assert not np.allclose(before, after)
    assert abs(np.median(after - before) - 20 * np.log10(0.25)) < 0.1       # log-mel in dB


@pytest.mark.parametrize("bad_id", ["a\x00b", "tab\there", "", " padded"])
def test_unusable_item_id_is_refused_at_the_manifest(corpus, tmp_path, bad_id):
    items = read_manifest(os.path.join(corpus, "manifest.jsonl"))
    rows = [it.to_json() for it in items[:3]]
    rows[1]["id"] = bad_id
    import json
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EmotionMXError, match="manifest.jsonl:2"):
        read_manifest(str(path))


def test_limit_negative_is_refused(corpus, tmp_path):
    with pytest.raises(EmotionMXError, match="--limit"):
        build_dataset("manifest", corpus, str(tmp_path / "s"), cfg=CFG, limit=-2, progress=False)


# ----------------------------------------------------------------------------- checkpoints

class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed after its first epoch's checkpoint (3 epochs planned)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_training_support import LABELS, TinyNet, small_config, synth_split
    from emotion_mx.training.trainer import fit
    run = str(tmp_path_factory.mktemp("run"))
    cfg = small_config(epochs=3)

    def kill_after_epoch_1(msg):
        if msg.startswith("epoch 1:"):
            raise _Killed()
    with pytest.raises(_Killed):
        fit(TinyNet(3), synth_split(40, 0), synth_split(12, 1), cfg, run_dir=run, labels=LABELS,
            modalities=("audio",), progress=False, echo=kill_after_epoch_1, tensorboard=False)

    def resume(run_dir):
        return fit(TinyNet(3), synth_split(40, 0), synth_split(12, 1), cfg, run_dir=run_dir, labels=LABELS,
                   modalities=("audio",), resume=True, progress=False, echo=lambda *a: None, tensorboard=False)
    return run, resume


def test_checkpoint_holds_no_pickle(killed_run):
    run, _ = killed_run
    files = sorted(os.listdir(os.path.join(run, "checkpoints")))
    assert files == ["epoch-0001.json", "epoch-0001.params", "epoch-0001.trainer.npz"]
    with np.load(os.path.join(run, "checkpoints", "epoch-0001.trainer.npz"), allow_pickle=False) as z:
        assert len(z.files) > 0 and all(z[k].dtype == np.float32 for k in z.files)


def _copy_run(run, tmp_path):
    import shutil
    dst = str(tmp_path / "copy")
    shutil.copytree(run, dst)
    return dst, os.path.join(dst, "checkpoints", "epoch-0001")


def test_pickled_trainer_states_are_refused_without_trust(killed_run, tmp_path, monkeypatch):
    """A crafted run folder's .states pickle used to run code on --resume."""
    import json
    import pickle
    run, resume = killed_run
    dst, stem = _copy_run(run, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(stem + ".states", "wb") as f:
        pickle.dump(Evil(), f)
    os.unlink(stem + ".trainer.npz")
    meta = json.load(open(stem + ".json"))
    del meta["trainer"]
    meta["states"] = "epoch-0001.states"
    json.dump(meta, open(stem + ".json", "w"))
    monkeypatch.delenv("EMOTION_MX_TRUST_PICKLE", raising=False)
    with pytest.raises(EmotionMXError, match="--trust-pickle"):
        resume(dst)
    assert not marker.exists()
    monkeypatch.setenv("EMOTION_MX_TRUST_PICKLE", "1")            # what --trust-pickle sets
    with pytest.raises(EmotionMXError, match="cannot resume"):
        resume(dst)
    assert marker.exists()                                        # trusted: the pickle was loaded


def test_checkpoint_json_without_rng_is_one_line(killed_run, tmp_path):
    import json
    run, resume = killed_run
    dst, stem = _copy_run(run, tmp_path)
    meta = json.load(open(stem + ".json"))
    del meta["rng"]
    json.dump(meta, open(stem + ".json", "w"))
    with pytest.raises(EmotionMXError, match="'rng'"):
        resume(dst)


def test_resume_with_other_settings_is_refused_naming_the_key(tmp_path):
    from emotion_mx import artifacts
    from emotion_mx.config import dump_config
    from emotion_mx.training.config import load_train_config
    from emotion_mx.training.run import _check_same_config
    cfg = load_train_config(None, {"epochs": 3, "seed": 1})
    dump_config(cfg, artifacts.run_file(str(tmp_path), artifacts.CONFIG))
    _check_same_config(str(tmp_path), cfg)                              # same: accepted
    with pytest.raises(EmotionMXError, match=r"started with optim\.lr = 0\.001, now 0\.5"):
        _check_same_config(str(tmp_path), load_train_config(None, {"epochs": 3, "seed": 1, "optim": {"lr": 0.5}}))


# ----------------------------------------------------------------------------- configs and options

@pytest.mark.parametrize("yaml_text,msg", [
    ("audio: {fmin: 4000, fmax: 2000}", "audio.fmax must be > 4000"),
    ("audio: {fmin: 9000}", "audio.fmin must be < 8000"),
    ("audio: {n_mels: 0}", "audio.n_mels must be >= 1"),
    ("splits: {seed: -1}", "splits.seed must be >= 0"),
    ("face: {margin: 7}", "face.margin must be <= 2"),
    ("shard_size: 0", "shard_size must be >= 1"),
    ("text: {vectors: glove.txt}", "text.vectors is set but nothing"),
])
def test_dataset_config_ranges_are_one_line(tmp_path, yaml_text, msg):
    from emotion_mx.config import load_config
    from emotion_mx.errors import ConfigError
    path = tmp_path / "d.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
        load_config(str(path), DatasetConfig)


@pytest.mark.parametrize("over,msg", [
    ({"seed": -1}, "seed must be an integer"),
    ({"model": {"name": "audio_cnn", "kwargs": {"dropout": 2.0}}}, r"model\.kwargs\.dropout must be a probability"),
    ({"data": {"modalities": ["audio"]}, "init": {"encoders": {"audio": "runs/{fold.__class__.__mro__}"}}},
     "may use only"),
])
def test_train_config_ranges_are_one_line(over, msg):
    from emotion_mx.errors import ConfigError
    from emotion_mx.training.config import load_train_config
    with pytest.raises(ConfigError, match=msg):
        load_train_config(None, over)


def test_warm_start_template_is_plain_replacement():
    from emotion_mx.training.warm_start import expand_run_template
    assert expand_run_template("runs/f{fold}-s{seed}", fold=2, seed=7) == "runs/f2-s7"
    with pytest.raises(EmotionMXError, match="may use only"):
        expand_run_template("runs/{fold.__class__.__mro__}", fold=0, seed=0)


def test_fold_option_out_of_range_is_one_line(reference, tmp_path):
    p = subprocess.run([sys.executable, "tools/train.py", "--data", reference, "--out", str(tmp_path / "r"),
                        "--fold", "99", "--modalities", "audio"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("WARNING")]
    assert len(lines) == 1 and "fold 99" in lines[0], p.stderr


# ----------------------------------------------------------------------------- ssh launcher

def test_ssh_checks_host_keys_unless_opted_out(tmp_path):
    from emotion_mx.training.distributed import plan
    ssh = [argv for role, argv, env in plan(["python", "x.py"], 1, hosts=["user@node1"], root_uri="10.0.0.1",
                                            port=9000) if role == "worker"][0]
    assert "StrictHostKeyChecking=yes" in ssh and ssh[ssh.index("--") + 1] == "user@node1"
    loose = [argv for role, argv, env in plan(["python", "x.py"], 1, hosts=["node1"], root_uri="10.0.0.1",
                                              port=9000, check_host_keys=False) if role == "worker"][0]
    assert "StrictHostKeyChecking=no" in loose


@pytest.mark.parametrize("entry", ["-oProxyCommand=touch /tmp/x", "node 1", "node\x07", "a;b"])
def test_hostfile_entries_that_are_not_hosts_are_refused(tmp_path, entry):
    from emotion_mx.training.distributed import read_hosts
    path = tmp_path / "hosts"
    path.write_text("node0\n" + entry + "\n")
    with pytest.raises(EmotionMXError, match="host 2"):
        read_hosts(str(path))


# ----------------------------------------------------------------------------- media bounds

def test_decompression_bomb_image_is_refused_before_decoding(tmp_path):
    """An 8000x8000 PNG of a few hundred KB used to take 3.5 GB and 14 s to decode."""
    import tracemalloc
    from PIL import Image
    from emotion_mx.features.face import extract_faces
    path = str(tmp_path / "bomb.png")
    Image.new("L", (8000, 8000)).save(path, optimize=True)
    assert os.path.getsize(path) < 1_000_000
    tracemalloc.start()
    with pytest.raises(BadItem, match="8000x8000 pixels, over the limit"):
        extract_faces(path, is_image=True, num_frames=1, detect=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000


def test_truncated_mp3_is_a_bad_item_not_a_shorter_clip(tmp_path):
    import imageio_ffmpeg
    from emotion_mx.features.audio import load_audio
    full = str(tmp_path / "full.mp3")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=5", "-ar", "16000", full], check=True)
    assert abs(len(load_audio(full)) - 5 * 16000) < 2000
    cut = str(tmp_path / "cut.mp3")
    with open(full, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[:9000])
    with pytest.raises(BadItem, match="truncated or damaged"):
        load_audio(cut)


def test_audio_decoding_is_bounded(tmp_path, monkeypatch):
    import soundfile as sf
    from emotion_mx.features import audio
    path = str(tmp_path / "long.wav")
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 6).astype(np.float32), 16000)
    monkeypatch.setattr(audio, "MAX_DECODE_SECONDS", 2.0)
    assert len(audio.load_audio(path)) == 2 * 16000                     # no max_seconds: the hard cap
    assert len(audio.load_audio(path, max_seconds=1.0)) == 16000


# ----------------------------------------------------------------------------- --out and OS errors

def _out_cases(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    cases = {"a file": str(afile), "under a file": str(afile / "sub")}
    if os.geteuid() != 0:             # root writes anywhere
        cases["read-only"] = str(ro / "sub")
    return cases


def test_ensure_output_dir_one_line_per_case(tmp_path):
    from emotion_mx.fileio import ensure_output_dir
    for what, path in _out_cases(tmp_path).items():
        with pytest.raises(EmotionMXError, match="--out") as e:
            ensure_output_dir(path, "--out")
        assert "\n" not in str(e.value), what
    assert os.path.isdir(ensure_output_dir(str(tmp_path / "new" / "dir")))


@pytest.mark.parametrize("tool,args", [
    ("build_dataset.py", ["--corpus", "manifest", "--root", "{corpus}"]),
    ("train.py", ["--data", "{store}", "--modalities", "audio"]),
    ("crossval.py", ["--data", "{store}"]),
    ("search.py", ["--config", "configs/search/demo.yaml", "--data", "{store}", "--trials", "1"]),
])
def test_out_that_is_a_file_is_one_line_for_every_tool(corpus, reference, tmp_path, tool, args):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (str(afile / "sub"),):          # both kinds: test_ensure_output_dir_one_line_per_case
        argv = [a.format(corpus=corpus, store=reference) for a in args]
        p = subprocess.run([sys.executable, f"tools/{tool}", *argv, "--out", out], cwd=ROOT,
                           capture_output=True, text=True)
        lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("WARNING")]
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        assert "--out" in lines[0]


def test_disk_full_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tool"])
    """ENOSPC (and read-only or permission errors) reaching the CLI boundary: one line, exit 2."""
    import errno
    import click
    from emotion_mx.cli import run_cli

    @click.command()
    def cmd():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/shard.npz")
    with pytest.raises(SystemExit) as e:
        run_cli(cmd, args=[])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "disk full" in err[0] and "/data/out/shard.npz" in err[0]


# ----------------------------------------------------------------------------- exported models

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from emotion_mx.deploy.export import export
    from emotion_mx.deploy.testing import make_run
    root = tmp_path_factory.mktemp("exported")
    make_run(str(root / "run"), "mid_tiny")
    export(str(root / "run"), str(root / "model"))
    make_run(str(root / "run3"), "mid_tiny", num_classes=3)
    export(str(root / "run3"), str(root / "model3"))
    return root


def _copy_model(exported, tmp_path):
    import shutil
    dst = tmp_path / "m"
    shutil.copytree(exported / "model", dst)
    return dst


def test_python_predict_refuses_non_finite_inputs(exported):
    from emotion_mx import artifacts as A
    from emotion_mx.deploy.testing import synthetic_inputs
    sc = A.read_sidecar(str(exported / "model"))
    x = synthetic_inputs(sc, batch_size=1)
    assert len(A.exported_input_arrays(sc, x)) == len(sc["inputs"])
    x["audio"][0, 0, 0] = np.nan
    with pytest.raises(EmotionMXError, match="input 'audio' holds NaN or inf"):
        A.exported_input_arrays(sc, x)


def test_python_load_of_another_graphs_params_is_one_line(exported, tmp_path):
    import shutil
    from emotion_mx import artifacts as A
    dst = _copy_model(exported, tmp_path)
    shutil.copy(exported / "model3" / A.EXPORT_PARAMS, dst / A.EXPORT_PARAMS)
    with pytest.raises(EmotionMXError):
        A.load_exported(str(dst))


@pytest.mark.parametrize("change,msg", [
    (lambda sc: sc.update(vocab="../../etc/passwd"), "'vocab' names"),
    (lambda sc: sc.update(vocab="/etc/passwd"), "'vocab' names"),
    (lambda sc: sc.update(inputs=[{"name": "audio", "shape": [1, -3]}]), r"'inputs\[0\]\.shape'"),
    (lambda sc: sc.update(labels="anger"), "'labels'"),
    (lambda sc: sc.update(modalities=["smell"]), "'modalities'"),
    (lambda sc: sc.clear(), "not an exported-model sidecar"),
])
def test_invalid_sidecar_is_one_line(exported, tmp_path, change, msg):
    import json
    from emotion_mx import artifacts as A
    dst = _copy_model(exported, tmp_path)
    sc = json.load(open(dst / A.SIDECAR))
    change(sc)
    json.dump(sc, open(dst / A.SIDECAR, "w"))
    with pytest.raises(EmotionMXError, match=msg):
        A.read_sidecar(str(dst))


def test_sidecar_vocab_symlink_leaving_the_folder_is_refused(exported, tmp_path):
    import json
    from emotion_mx import artifacts as A
    dst = _copy_model(exported, tmp_path)
    (tmp_path / "secret.json").write_text("{}")
    os.symlink(tmp_path / "secret.json", dst / "v.json")
    sc = json.load(open(dst / A.SIDECAR))
    sc["vocab"] = "v.json"
    json.dump(sc, open(dst / A.SIDECAR, "w"))
    with pytest.raises(EmotionMXError, match="outside the model folder"):
        A.read_sidecar(str(dst))


@pytest.mark.parametrize("tool", ["predict", "export"])
@pytest.mark.parametrize("content", [b"\xff{not json", b"{\"name\": 3}"])
def test_invalid_model_json_is_one_line_for_the_tools(exported, tmp_path, tool, content):
    import shutil
    if tool == "predict":
        d = _copy_model(exported, tmp_path)
        args = ["tools/predict.py", "--model", str(d), "--text", "hello there"]
    else:
        d = tmp_path / "run"
        shutil.copytree(exported / "run", d)
        args = ["tools/export.py", "--run", str(d), "--out", str(tmp_path / "out")]
    (d / "model.json").write_bytes(content)
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("WARNING")]
    assert p.returncode == 2 and len(lines) == 1 and "model.json" in lines[0], p.stderr


@pytest.mark.parametrize("kind", ["latin1", "folder"])
def test_config_that_is_not_utf8_text_is_one_line(tmp_path, kind):
    from emotion_mx.config import load_config
    from emotion_mx.errors import ConfigError
    path = tmp_path / "c.yaml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes("corpus: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="folder" if kind == "folder" else "not UTF-8"):
        load_config(str(path), DatasetConfig)


@pytest.mark.parametrize("path", ["../outside.jsonl", "/etc/hostname", "link/manifest.jsonl"])
def test_reader_path_option_leaving_the_root_is_refused(tmp_path, path):
    from emotion_mx.corpora import read_corpus
    root = tmp_path / "root"
    root.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.jsonl").write_text('{"id": "a", "label": "anger", "group": "g"}\n')
    (tmp_path / "outside.jsonl").write_text('{"id": "a", "label": "anger", "group": "g"}\n')
    os.symlink(other, root / "link")
    with pytest.raises(EmotionMXError, match="option 'path' .* is outside the corpus root"):
        read_corpus("manifest", str(root), path=path)


def test_resume_on_another_fold_is_refused(reference, tmp_path):
    """--resume --fold 1 on a fold-0 run used to switch folds (fold 1's test speakers then took
    part in model selection)."""
    from emotion_mx.training import train
    from emotion_mx.training.config import load_train_config
    cfg = load_train_config(None, {"epochs": 1, "batch_size": 4, "data": {"modalities": ["audio"]},
                                   "model": {"name": "audio_cnn"}})
    run = str(tmp_path / "run")
    train(cfg, reference, run, fold=0, progress=False, echo=lambda *a: None)
    with pytest.raises(EmotionMXError, match=r"different fold \(0 vs 1\)"):
        train(cfg, reference, run, fold=1, resume=True, progress=False, echo=lambda *a: None)
