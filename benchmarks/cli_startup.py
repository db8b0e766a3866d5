"""Start-up time of the command line: wall seconds per call (median of N), as a Markdown table.

    .venv/bin/python benchmarks/cli_startup.py [-n 7] [--before DIR]

``--before DIR``: also time ``tools/train.py --help`` and ``tools/predict.py --help`` in DIR, a
checkout of an earlier version (e.g. ``git archive main | tar -x -C /tmp/before``), in the same
rounds.  Rows are timed round-robin (one call of each row per round) so machine load hits
every row alike.

Rows: `emotion-mx --help` through `python -m emotion_mx` (the group lists its verbs from the
registry, importing none of them), a verb's `--help`, a shim, an eager baseline that imports
every verb's working modules up front (what a group without lazy verbs would cost), and a bare
`python -c pass` for reference.  Each row is a fresh process, so this is cold-start latency.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EAGER = ("import emotion_mx.cli, emotion_mx.training, emotion_mx.search, emotion_mx.deploy.pipeline, "
         "emotion_mx.inference.predict, emotion_mx.inference.stream, emotion_mx.build")
ROWS = [
    ("python -c pass (interpreter only)", ["-c", "pass"]),
    ("python -m emotion_mx --help", ["-m", "emotion_mx", "--help"]),
    ("python -m emotion_mx predict --help", ["-m", "emotion_mx", "predict", "--help"]),
    ("python -m emotion_mx train --help", ["-m", "emotion_mx", "train", "--help"]),
    ("python tools/train.py --help (shim)", ["tools/train.py", "--help"]),
    ("eager: import every verb's modules", ["-c", EAGER]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--repeats", type=int, default=7)
    p.add_argument("--before", help="checkout of an earlier version to time beside this one")
    args = p.parse_args()
    rows = [(title, argv, ROOT) for title, argv in ROWS]
    if args.before:
        rows += [(f"before: python tools/{t}.py --help", [f"tools/{t}.py", "--help"], os.path.abspath(args.before))
                 for t in ("train", "predict")]
    times = {title: [] for title, _, _ in rows}
    for _ in range(args.repeats):
        for title, argv, root in rows:
            env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
            times[title].append(time.perf_counter() - t0)
    print(f"| command (n={args.repeats}) | median s | min s |\n|---|---|---|")
    for title, _, _ in rows:
        print(f"| `{title}` | {statistics.median(times[title]):.3f} | {min(times[title]):.3f} |")


if __name__ == "__main__":
    main()
