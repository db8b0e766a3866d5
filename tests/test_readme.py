"""The README's "Use your own data" commands, run as written on a folder of real EmoDB clips, and
the README's size and links."""
import csv
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
README = os.path.join(ROOT, "README.md")


def _block(marker):
    text = open(README, encoding="utf-8").read()
    m = re.search(rf"<!-- {marker}:[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert m, f"README has no block after <!-- {marker}: ... -->"
    return [l for l in m.group(1).splitlines() if l.strip() and not l.startswith("#")]


def test_readme_is_short_and_its_links_exist():
    text = open(README, encoding="utf-8").read()
    assert len(text.splitlines()) <= 320
    assert not re.search(r"\bissue \d+", text, re.I)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert os.path.exists(os.path.join(ROOT, target)), f"README links to missing {target}"


def test_clip_folder_reader_groups_by_the_speaker_column(tmp_path):
    from emotion_mx.corpora import read_corpus
    for rel in ("anger/a1.wav", "anger/b1.wav", "sadness/a2.flac", "sadness/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,speaker\nanger/a1.wav,A\nanger/b1.wav,B\nsadness/a2.flac,A\n")
    items, _ = read_corpus("clip_folder", str(tmp_path))
    got = sorted((it.label, it.group, it.audio) for it in items)
    assert got == [("anger", "A", "anger/a1.wav"), ("anger", "B", "anger/b1.wav"), ("sadness", "A", "sadness/a2.flac")]
    assert all(it.image is None for it in items)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not __import__("importlib").util.find_spec("onnx"), reason="the [onnx] extra is not installed")
def test_own_data_walkthrough_runs_as_written(real_data, tmp_path):
    """6 EmoDB clips per speaker laid out as the README says, then every command of the block."""
    src = os.path.join(real_data, "emodb")
    rows = list(csv.DictReader(open(os.path.join(src, "labels.csv"), encoding="utf-8")))
    per_speaker, picked = {}, []
    for r in sorted(rows, key=lambda r: (r["emotion"], r["file"])):
        if per_speaker.get(r["speaker"], 0) < 6 or r["file"].endswith(("03a01Wa.wav", "03a02Ta.wav")):
            per_speaker[r["speaker"]] = per_speaker.get(r["speaker"], 0) + 1
            picked.append(r)
    clips = tmp_path / "my_clips"
    with open(clips.parent / "labels.tmp", "w") as f:
        f.write("file,speaker\n")
        for r in picked:
            rel = f"{r['emotion']}/{os.path.basename(r['file'])}"
            (clips / r["emotion"]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(os.path.join(src, r["file"]), clips / rel)
            f.write(f"{rel},{r['speaker']}\n")
    shutil.move(str(clips.parent / "labels.tmp"), str(clips / "labels.csv"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    commands = _block("own-data")
    assert [c.split()[1] for c in commands] == ["build", "train", "evaluate", "export", "predict", "serve"]
    for line in commands[:-1]:
        args = [sys.executable, "-m", "emotion_mx"] + shlex.split(line)[1:]
        run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{line}\n{run.stderr[-2000:]}"
    assert os.path.isfile(tmp_path / "work/my_model/model.onnx")
    assert re.search(r"^(anger|boredom|disgust|fear|happiness|neutral|sadness)\b", run.stdout), run.stdout
    serve = shlex.split(commands[-1])
    port = int(serve[serve.index("--port") + 1])
    proc = subprocess.Popen([sys.executable, "-m", "emotion_mx"] + serve[1:], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        import httpx
        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the README's serve command never became ready")
        with open(clips / "anger" / "03a01Wa.wav", "rb") as f:
            r = httpx.post(f"http://127.0.0.1:{port}/predict", files={"audio": ("a.wav", f, "audio/wav")}, timeout=60)
        assert r.status_code == 200 and r.json()["label"] in ("anger", "boredom", "disgust", "fear", "happiness",
                                                             "neutral", "sadness")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
