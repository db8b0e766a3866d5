#!/usr/bin/env python
"""Load and fault test of the REST service on loopback, with a real HTTP client (httpx).

    nice -n 10 python benchmarks/serve_load.py [--requests 10000] [--per-cell 200] [--work DIR]
                                               [--model DIR --audio-model DIR] [--phases load,memory,faults,kill]

Exports two models with random weights (the cost does not depend on the weights) at tri-modal
store settings (log-mel + prosody, 300 audio frames, 32 tokens, 8 face frames): ``mid_tiny``
(audio + text + face) and ``audio_cnn`` (audio only), unless ``--model``/``--audio-model`` are
given.  Inputs: an EmoDB wav, a CK+48 face and a sentence from ``$EMOTION_MX_DATA`` (else a
synthetic tone and a drawn face).  Every server is ``python -m emotion_mx.serve`` in a
subprocess on 127.0.0.1; nothing is retried by the client.

Phases (each prints a table):

* ``load``   — requests/s and latency p50/p95/p99 at ``--clients`` (1, 4 and 16) concurrent clients,
  ``--load-models`` audio-only (``audio_cnn``) and tri-modal (``mid_tiny``) requests,
  ``--workers 2``, ``--runtime`` (``auto``; ``onnxruntime`` exports ``model.onnx`` first); with
  ``--cpu-hog`` every row is measured idle and then beside a CPU hog (``python -c "while True:
  pass"``, started for that row and stopped by its PID); server errors (5xx, connection errors)
  and 429s counted;
* ``memory`` — resident memory of a single worker after 1,000 and after ``--requests`` mixed
  requests (audio, text, face, all three) at 4 concurrent clients;
* ``faults`` — a primary failing 30 % of its calls (``EMOTION_MX_SERVE_FAULTS=fail=0.3``) with
  one retry and the INT8 export as fallback: answers, served by primary / fallback;
* ``kill``   — ``--workers 2`` under load (4 clients, one connection per request), one worker
  SIGKILLed after a quarter of the requests: failed requests (at most the ones in flight in
  that worker), and the replacement worker's pid answering ``/health``.

The cores are shared with other jobs: the figures vary with the machine's load.
"""
import asyncio
import glob
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emotion_mx.cli import run_cli  # noqa: E402

SETTINGS = dict(audio_feature="logmel+prosody", n_mels=64, audio_frames=300, num_frames=8, max_tokens=32)
SENTENCE = "I cannot believe you did that again"


# --------------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------------

def make_models(work):
    from emotion_mx.inference.testing import make_exported
    out = {}
    for key, kw in (("tri", dict(name="mid_tiny")), ("int8", dict(name="mid_tiny", precision="int8")),
                    ("audio", dict(name="audio_cnn", modalities=("audio",)))):
        d = os.path.join(work, key)
        if not os.path.isfile(os.path.join(d, "model.json")):
            make_exported(d, os.path.join(work, f"run-{key}"), **kw, **SETTINGS)
        out[key] = d
    return out


def make_media(work):
    """(wav path, face image path, description)."""
    data = os.environ.get("EMOTION_MX_DATA")
    if data:
        wav = sorted(glob.glob(os.path.join(data, "emodb", "wav", "*.wav")))
        png = sorted(glob.glob(os.path.join(data, "ckplus48", "*", "*.png")))
        if wav and png:
            return wav[0], png[0], f"EmoDB {os.path.basename(wav[0])}, CK+48 {os.path.basename(png[0])}"
    import cv2
    from emotion_mx.inference.testing import face_image, tone_wave, write_wav
    wav = write_wav(os.path.join(work, "tone.wav"), tone_wave(2.5))
    png = os.path.join(work, "face.png")
    cv2.imwrite(png, face_image(0.3))
    return wav, png, "synthetic tone (2.5 s) and drawn face"


def request_kinds(wav, png):
    with open(wav, "rb") as f:
        audio = f.read()
    with open(png, "rb") as f:
        image = f.read()
    return {
        "audio": dict(files={"audio": ("clip.wav", audio)}),
        "text": dict(data={"text": SENTENCE}),
        "face": dict(files={"image": ("face.png", image)}),
        "tri": dict(files={"audio": ("clip.wav", audio), "image": ("face.png", image)}, data={"text": SENTENCE}),
    }


# --------------------------------------------------------------------------------------------
# the client
# --------------------------------------------------------------------------------------------

async def drive(url, kinds, n, concurrency, keepalive=True, on_done=None):
    """``n`` POST /predict requests cycling over ``kinds`` (list of request kwargs) from
    ``concurrency`` clients; returns a list of (status or exception name, seconds, body)."""
    import httpx
    limits = httpx.Limits(max_connections=concurrency,
                          max_keepalive_connections=concurrency if keepalive else 0)
    results = []
    counter = iter(range(n))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker():
            for i in counter:
                kw = kinds[i % len(kinds)]
                t0 = time.perf_counter()
                try:
                    r = await client.post(url + "/predict", **kw)
                    status, body = r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                except httpx.HTTPError as e:
                    status, body = type(e).__name__, {}
                results.append((status, time.perf_counter() - t0, body))
                if on_done is not None:
                    await on_done(len(results))
        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return results


def pct(values, q):
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def start(args, log, faults=None):
    from emotion_mx.serve.testing import Server
    return Server(args, log, faults=faults).wait_ready(timeout=300)


# --------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------

class CpuHog:
    """``python -c "while True: pass"`` beside the server while the block runs; stopped by its PID."""

    def __enter__(self):
        import subprocess
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)                                                         # running before timing
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


LOAD_MODELS = {"audio": ("audio-only (audio_cnn)", "audio", "audio"), "tri": ("tri-modal (mid_tiny)", "tri", "tri")}


def phase_load(models, kinds, work, per_cell, clients=(1, 4, 16), load_models=("audio", "tri"), runtime="auto",
               hog=False, workers=2):
    import contextlib
    rows = []
    for key in load_models:
        label, model_key, kind = LOAD_MODELS[key]
        srv = start(["--model", models[model_key], "--workers", str(workers), "--max-queue", "16", "--runtime", runtime],
                    os.path.join(work, f"load-{kind}.log"))
        try:
            asyncio.run(drive(srv.url, [kinds[kind]], 8, 2))                  # connections + caches
            import httpx
            served = httpx.get(srv.url + "/model").json()["primary"]
            for c in clients:
                for load in (("idle", "CPU hog") if hog else ("idle",)):
                    with CpuHog() if load == "CPU hog" else contextlib.nullcontext():
                        t0 = time.perf_counter()
                        res = asyncio.run(drive(srv.url, [kinds[kind]], per_cell, c))
                        wall = time.perf_counter() - t0
                    ok = [s for st, s, _ in res if st == 200]
                    errors = sum(1 for st, _, _ in res if not isinstance(st, int) or st >= 500)
                    rows.append({"requests": label, "runtime": served["runtime"], "threads": served.get("threads"),
                                 "load": load, "clients": c, "n": len(res), "rps": len(ok) / wall,
                                 "p50": pct(ok, 50), "p95": pct(ok, 95), "p99": pct(ok, 99),
                                 "429": sum(1 for st, _, _ in res if st == 429), "errors": errors})
        finally:
            srv.stop()
    from emotion_mx.serve.settings import ServeSettings
    omp = ServeSettings(model="-", workers=workers).session_threads()     # what `serve` gives each worker
    source = "EMOTION_MX_THREADS" if os.environ.get("EMOTION_MX_THREADS") else "cores / workers"
    print(f"\n{workers} workers; threads per worker {omp} ({source}), no ORT spinning\n")
    print("| requests | runtime (threads/worker) | load | clients | n | req/s | p50 ms | p95 ms | p99 ms | 429 | server errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['requests']} | {r['runtime']} ({r['threads'] or 'OMP_NUM_THREADS ' + str(omp)}) | {r['load']} | "
              f"{r['clients']} | {r['n']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} "
              f"| {r['p99']:.0f} | {r['429']} | {r['errors']} |")
    return rows


def phase_memory(models, kinds, work, total):
    srv = start(["--model", models["tri"], "--workers", "1"], os.path.join(work, "memory.log"))
    marks = {}
    first = min(1000, total)

    async def on_done(k):
        if k in (first, total):
            marks[k] = rss_mb(srv.proc.pid)
    try:
        mixed = [kinds[k] for k in ("audio", "text", "face", "tri")]
        t0 = time.perf_counter()
        res = asyncio.run(drive(srv.url, mixed, total, 4, on_done=on_done))
        wall = time.perf_counter() - t0
    finally:
        srv.stop()
    ok = sum(1 for st, _, _ in res if st == 200)
    errors = sum(1 for st, _, _ in res if not isinstance(st, int) or st >= 500)
    a, b = marks.get(first, float("nan")), marks.get(total, float("nan"))
    print(f"\n| requests (mixed audio/text/face/tri-modal, 4 clients) | answered | server errors | RSS after {first} | "
          f"RSS after {total} | change |")
    print("|---|---|---|---|---|---|")
    print(f"| {total} in {wall:.0f} s | {ok} | {errors} | {a:.1f} MB | {b:.1f} MB | {100 * (b - a) / a:+.1f} % |")
    return {"requests": total, "answered": ok, "errors": errors, "rss_first_mb": a, "rss_last_mb": b, "seconds": wall}


def phase_faults(models, kinds, work, n):
    srv = start(["--model", models["tri"], "--fallback", models["int8"], "--retries", "1"],
                os.path.join(work, "faults.log"), faults="fail=0.3")
    try:
        res = asyncio.run(drive(srv.url, [kinds["tri"]], n, 4))
    finally:
        srv.stop()
    ok = [b for st, _, b in res if st == 200]
    served = {k: sum(1 for b in ok if b.get("served_by") == k) for k in ("primary", "fallback")}
    retried = sum(1 for b in ok if b.get("served_by") == "primary" and b.get("attempts", 1) > 1)
    print("\n| primary fails 30 % (1 retry, INT8 fallback) | answered | by primary (first try) | by primary (after a retry) "
          "| by fallback | errors |")
    print("|---|---|---|---|---|---|")
    print(f"| {n} tri-modal requests, 4 clients | {len(ok)} ({100 * len(ok) / n:.0f} %) | {served['primary'] - retried} | "
          f"{retried} | {served['fallback']} | {n - len(ok)} |")
    return {"n": n, "answered": len(ok), **served, "retried": retried}


def worker_pids(url, tries=60):
    """Worker pids that answer /health (new connection per call: the kernel spreads them)."""
    import httpx
    pids = set()
    for _ in range(tries):
        try:
            with httpx.Client(timeout=5) as c:
                pids.add(c.get(url + "/health").json()["pid"])
        except httpx.HTTPError:
            pass
    return pids


def phase_kill(models, kinds, work, n):
    srv = start(["--model", models["tri"], "--workers", "2"], os.path.join(work, "kill.log"))
    import httpx
    deadline = time.time() + 120
    before = set()
    while len(before) < 2 and time.time() < deadline:     # both workers loaded and answering
        before |= {p for p in worker_pids(srv.url, 10)
                   if httpx.get(srv.url + "/ready").status_code == 200}
    killed = {}

    async def on_done(k):
        if k == n // 4 and not killed:
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            killed.update(pid=victim, at=k)
    try:
        res = asyncio.run(drive(srv.url, [kinds["audio"], kinds["tri"]], n, 4, keepalive=False, on_done=on_done))
        replacement = set()
        while time.time() < deadline + 120 and not replacement:
            replacement = worker_pids(srv.url, 10) - before
            time.sleep(0.5)
    finally:
        srv.stop()
    failed = [st for st, _, _ in res if st != 200]
    pids = replacement
    replacement = sorted(replacement)
    print("\n| worker killed (SIGKILL) after a quarter of the requests, 2 workers, 4 clients | answered | failed "
          "| replacement worker answering /health |")
    print("|---|---|---|---|")
    print(f"| {n} requests (audio / tri-modal), worker {killed.get('pid')} killed after {killed.get('at')} "
          f"| {n - len(failed)} | {len(failed)} ({', '.join(f'{failed.count(k)} {k}' for k in sorted(set(failed), key=str)) or 'none'}) | "
          f"{'yes, pid ' + str(replacement[0]) if replacement and replacement[0] in pids else 'no'} |")
    return {"n": n, "failed": len(failed), "failure_kinds": sorted(set(map(str, failed))),
            "killed": killed, "replacement": replacement, "replacement_answered": bool(replacement and replacement[0] in pids)}


@click.command()
@click.option("--requests", "total", default=10000, show_default=True, type=click.IntRange(1000),
              help="Requests of the memory phase (RSS is read after 1,000 and after this many).")
@click.option("--per-cell", default=200, show_default=True, type=click.IntRange(10), help="Requests per load-table row.")
@click.option("--fault-requests", default=300, show_default=True, type=click.IntRange(10))
@click.option("--kill-requests", default=400, show_default=True, type=click.IntRange(20))
@click.option("--phases", default="load,memory,faults,kill", show_default=True)
@click.option("--clients", default="1,4,16", show_default=True, help="Load phase: concurrent clients per row.")
@click.option("--load-models", default="audio,tri", show_default=True, help="Load phase: audio (audio_cnn), tri (mid_tiny).")
@click.option("--runtime", type=click.Choice(["auto", "mxnet", "onnxruntime"]), default="auto", show_default=True,
              help="Load phase: the server's --runtime (onnxruntime: model.onnx is exported first).")
@click.option("--cpu-hog", is_flag=True, help="Load phase: every row idle and beside a CPU hog.")
@click.option("--work", type=click.Path(), help="Folder for the models and server logs [a temporary one].")
@click.option("--out", type=click.Path(), help="Write the figures as JSON here.")
def main(total, per_cell, fault_requests, kill_requests, phases, clients, load_models, runtime, cpu_hog, work, out):
    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        clients = tuple(int(c) for c in clients.split(","))
        if min(clients) < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"'{clients}': expected positive integers separated by commas",
                                 param_hint="--clients") from None
    load_models = tuple(m.strip() for m in load_models.split(",") if m.strip())
    if not load_models or set(load_models) - set(LOAD_MODELS):
        raise click.BadParameter(f"'{','.join(load_models)}': expected audio and/or tri", param_hint="--load-models")
    work = work or tempfile.mkdtemp(prefix="emx-serve-load-")
    os.makedirs(work, exist_ok=True)
    models = make_models(work)
    wav, png, desc = make_media(work)
    kinds = request_kinds(wav, png)
    if runtime == "onnxruntime":
        from emotion_mx.deploy.onnx_export import export_onnx
        for key in {LOAD_MODELS[m][1] for m in load_models}:
            if not os.path.isfile(os.path.join(models[key], "model.onnx")):
                export_onnx(models[key])
    from emotion_mx.deploy.pipeline import cpu_info
    cpu = cpu_info()
    print(f"# serve_load: {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags']) or 'no AVX2'}), "
          f"Python {platform.python_version()}; inputs: {desc}; models with random weights at tri-modal store settings")
    figures = {}
    chosen = [p.strip() for p in phases.split(",") if p.strip()]
    for p in chosen:
        if p == "load":
            figures["load"] = phase_load(models, kinds, work, per_cell, clients=clients, load_models=load_models,
                                         runtime=runtime, hog=cpu_hog)
        elif p == "memory":
            figures["memory"] = phase_memory(models, kinds, work, total)
        elif p == "faults":
            figures["faults"] = phase_faults(models, kinds, work, fault_requests)
        elif p == "kill":
            figures["kill"] = phase_kill(models, kinds, work, kill_requests)
        else:
            raise click.BadParameter(f"unknown phase '{p}' (load, memory, faults, kill)", param_hint="--phases")
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    run_cli(main)
