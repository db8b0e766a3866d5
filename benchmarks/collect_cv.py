#!/usr/bin/env python
"""Print a Markdown table (mean ± std over folds) from tools/crossval.py output folders."""
import json
import os

import click
import numpy as np

METRICS = (("unweighted_accuracy", "UA"), ("accuracy", "WA"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1"),
           ("valid_ua", "valid UA"))


@click.command()
@click.argument("cv_dirs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--title", default="", help="Heading printed above the table.")
def main(cv_dirs, title):
    if title:
        click.echo(f"### {title}\n")
    click.echo("| run | model | modalities | folds | " + " | ".join(n for _, n in METRICS) + " | per-fold test UA |")
    click.echo("|---|---|---|---|" + "---|" * len(METRICS) + "---|")
    for d in cv_dirs:
        res = json.load(open(os.path.join(d, "results.json")))
        runs = res["runs"]
        spec = json.load(open(os.path.join(runs[0]["run"], "model.json")))
        cells = []
        for key, _ in METRICS:
            v = np.array([r[key] for r in runs], float)
            cells.append(f"{100 * v.mean():.1f} ± {100 * v.std():.1f}")
        per_fold = ", ".join(f"{100 * r['unweighted_accuracy']:.0f}" for r in runs)
        click.echo(f"| {os.path.basename(d.rstrip('/'))} | {spec['name']} | {'+'.join(spec['modalities'])} | "
                   f"{len(runs)} | " + " | ".join(cells) + f" | {per_fold} |")
    click.echo("\nTest metrics in %, mean ± std over folds (population std); model selection and early "
               "stopping on each fold's validation speakers only.")


if __name__ == "__main__":
    main()
