"""Search results from ``trials.jsonl``: leaderboard (CSV + Markdown, validation UA descending,
failed trials last), the best trial's full TrainConfig as YAML, and score-against-trial plot."""
import csv
import io
import os

from ..fileio import atomic_path, write_text
from .trials import METRIC, write_trial_config

__all__ = ["leaderboard", "write_reports", "LEADERBOARD_CSV", "LEADERBOARD_MD", "BEST_YAML", "SCORES_PNG"]

LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
BEST_YAML = "best.yaml"
SCORES_PNG = "scores.png"

_COLUMNS = ("rank", "trial_id", METRIC, "valid_loss", "best_epoch", "epochs_run", "seconds", "status")


def leaderboard(records):
    """Records sorted by validation UA, best first; ties go to the lower validation loss (at
    the selected epoch), then to the earlier trial; failed trials last, in trial order."""
    def key(r):
        loss = r.get("valid_loss")
        return -r[METRIC], float("inf") if loss is None else loss, r["index"]
    ok = sorted((r for r in records if r.get("status") == "ok"), key=key)
    failed = sorted((r for r in records if r.get("status") != "ok"), key=lambda r: r["index"])
    return ok + failed


def _rows(records, keys):
    rows = []
    for rank, rec in enumerate(leaderboard(records), 1):
        row = {c: rec.get(c) for c in _COLUMNS}
        row["rank"] = rank if rec.get("status") == "ok" else ""
        row.update({k: rec["params"].get(k) for k in keys})
        if rec.get("status") != "ok":
            row["status"] = f"failed: {rec.get('error', '')}"
        rows.append(row)
    return rows


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown_table(records, keys):
    rows = _rows(records, keys)
    cols = list(_COLUMNS) + list(keys)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        out.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out) + "\n"


def write_reports(out_dir, records, space_keys, title="Architecture search"):
    """Write leaderboard.csv / .md, best.yaml and scores.png into ``out_dir``; return the best
    record (None when no trial finished)."""
    keys = list(space_keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(_COLUMNS) + keys, lineterminator="\n")
    writer.writeheader()
    for row in _rows(records, keys):
        writer.writerow({k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                         for k, v in row.items()})
    write_text(os.path.join(out_dir, LEADERBOARD_CSV), buf.getvalue())
    ranked = leaderboard(records)
    best = ranked[0] if ranked and ranked[0].get("status") == "ok" else None
    n_ok = sum(r.get("status") == "ok" for r in records)
    head = [f"# {title}", "",
            f"{len(records)} trial(s), {n_ok} finished, {len(records) - n_ok} failed; "
            f"score: validation unweighted accuracy (`{METRIC}`), best epoch of each run.", ""]
    if best:
        head += [f"Best: trial `{best['trial_id']}` with {METRIC} {best[METRIC]:.4f} "
                 f"(config: `{BEST_YAML}`, run: `{best['run_dir']}`).", ""]
    write_text(os.path.join(out_dir, LEADERBOARD_MD), "\n".join(head) + markdown_table(records, keys))
    if best:
        write_trial_config(best, os.path.join(out_dir, BEST_YAML))
    plot_scores(records, os.path.join(out_dir, SCORES_PNG))
    return best


def plot_scores(records, path):
    """Validation UA of each trial in finishing order, with the running best."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs, ys, best, run = [], [], [], -1.0
    for i, rec in enumerate(records, 1):
        if rec.get("status") == "ok":
            xs.append(i)
            ys.append(rec[METRIC])
            run = max(run, rec[METRIC])
            best.append(run)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    failed = [i for i, r in enumerate(records, 1) if r.get("status") != "ok"]
    ax.plot(xs, ys, "o", label="trial")
    ax.step(xs, best, where="post", label="best so far")
    if failed:
        ax.plot(failed, [0.0] * len(failed), "x", color="red", label="failed")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (finishing order)")
    ax.set_ylabel("validation UA")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
