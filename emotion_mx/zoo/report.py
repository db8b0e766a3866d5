"""Model cards as text: one headline line (``zoo list``) and the full card in Markdown
(``zoo info NAME``, and ``docs/zoo.md`` is made of these)."""
from .cards import ZOO_LABELS

__all__ = ["headline", "card_markdown", "CORPUS_METRIC"]

# the metric each corpus is usually reported with (its published baselines)
CORPUS_METRIC = {"goemotions": "macro_f1", "iemocap_text": "weighted_f1"}
METRIC_NAME = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1", "weighted_f1": "weighted F1"}


def _pct(x):
    return f"{100 * x:.1f}"


def _figure(corpus, row):
    metric = CORPUS_METRIC.get(corpus, "ua")
    m = row[metric]
    return f"{corpus} {METRIC_NAME[metric]} {_pct(m['mean'])} ± {_pct(m['std'])} ({row['folds']} fold(s))"


def headline(name, measured):
    if not measured:
        return "not built in this installation (emotion-mx zoo build " + name + ")"
    if "composed" in measured:
        m = measured["composed"]["by_modalities"]["audio+text+video"]["ua"]
        return f"composed EmoDB + ISEAR + CK+48 UA {_pct(m['mean'])} ± {_pct(m['std'])} (product of experts)"
    key = measured["encoder"] + (f" ({measured['encoder_variant']})" if measured.get("encoder_variant") else "")
    rows = measured["heldout"][key]
    return f"{measured['encoder']}: " + "; ".join(_figure(c, r) for c, r in rows.items())


def _table(rows):
    out = ["| data | folds | UA | WA | macro-F1 | weighted F1 | per fold (UA) |", "|---|---|---|---|---|---|---|"]
    for corpus, r in rows.items():
        cells = [f"{_pct(r[k]['mean'])} ± {_pct(r[k]['std'])}" for k in ("ua", "wa", "macro_f1", "weighted_f1")]
        out.append(f"| {corpus} | {r['folds']} | " + " | ".join(cells) + " | "
                   + ", ".join(_pct(v) for v in r["ua"]["folds"]) + " |")
    return out


def card_markdown(card, measured):
    """The whole model card of ``card`` (a :class:`ZooCard`) with its measured half."""
    lines = [f"## `{card.name}`", "", card.summary, "",
             f"- Inputs: {', '.join(card.modalities)}; labels: {', '.join(ZOO_LABELS)}.",
             f"- Intended use: research and prototyping of emotion recognition; not for decisions about people.",
             f"- Limits: {card.limits}"]
    if not measured:
        return "\n".join(lines + ["", f"Not built in this installation: `emotion-mx zoo build {card.name}`."])
    lines.append(f"- Built {measured['built']} by `{measured['command']}` ({measured['machine']}); "
                 f"{measured['protocol']}.")
    if "composed" in measured:
        comp = measured["composed"]
        lines += ["", f"Fusion: {measured['fusion']}.  Measured on {comp['corpora']}: {comp['items']} items of "
                      f"{', '.join(comp['classes'])}.", "",
                  "| modalities | folds | UA | per fold |", "|---|---|---|---|"]
        for mods, r in comp["by_modalities"].items():
            lines.append(f"| {mods} | {r['folds']} | {_pct(r['ua']['mean'])} ± {_pct(r['ua']['std'])} | "
                         + ", ".join(_pct(v) for v in r["ua"]["folds"]) + " |")
        return "\n".join(lines)
    head = measured["head"]
    lines.append(f"- Encoder: `{measured['encoder']}`"
                 + (f" (chosen on validation over {', '.join(f'{e} {v:.3f}' for e, v in measured['encoder_selection'].items())})"
                    if measured.get("encoder_selection") and len(measured["encoder_selection"]) > 1 else "")
                 + "; head: " + ", ".join(f"{k} {v}" for k, v in head.items()) + ".")
    lines += ["", "Data and label mapping:", "", "| corpus | licence | labels | items | trained on |", "|---|---|---|---|---|"]
    for c in measured["corpora"]:
        lines.append(f"| {c['name']} | {c['licence']} | {c['labels']} | {c['items']} | {c['trained_items']} |")
    for encoder, rows in measured["heldout"].items():
        lines += ["", f"Held-out speakers / subjects / writers, `{encoder}` (test split read once per fold):", ""]
        lines += _table(rows)
    for encoder, rows in (measured.get("cross_corpus") or {}).items():
        if rows:
            lines += ["", f"Cross-corpus, `{encoder}` (trained without the corpus, tested on all of it, on the "
                          "classes the training data has):", "", "| tested on | trained on | items | UA | macro-F1 |",
                      "|---|---|---|---|---|"]
            lines += [f"| {c} | {', '.join(r['trained_on'])} | {r['n']} | {_pct(r['ua'])} | {_pct(r['macro_f1'])} |"
                      for c, r in rows.items()]
    if measured.get("note"):
        lines += ["", measured["note"] + "."]
    return "\n".join(lines)
