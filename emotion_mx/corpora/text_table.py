"""Generic reader for texts labelled in a CSV/TSV table, with ISEAR and GoEmotions presets.

Columns are named (``header: true``) or 0-based indices (``header: false``).  ``path`` is one
file or a mapping ``{split: file}`` (split names such as ``dev`` become ``valid``).
"""
import os
import re
from collections.abc import Mapping

from ..errors import EmotionMXError
from ..manifest import Utterance
from .common import check_choice, csv_rows, norm_split, read_text
from .registry import LayoutError, Skip, register_preset, register_reader

MULTI_LABEL = ("first", "drop", "duplicate")


def _column(spec, header, option, path):
    """0-based index of column ``spec`` (a name, or an index) in ``header`` (None: no header)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    if header is not None and spec in header:
        return header.index(spec)
    if header is None and str(spec).isdigit():
        return int(spec)
    where = f"columns: {', '.join(header)}" if header is not None else "the file has no header: give an index"
    raise EmotionMXError(f"{path}: option '{option}': no column {spec!r} ({where})")


def _normalise(text):
    """Lower-case text without brackets/punctuation, for matching placeholder patterns."""
    return " ".join(re.sub(r"[^\w\s']+", " ", text.lower()).split())


def _fix_row(row, width, text_col, delimiter, rejoin_text):
    """``row`` with exactly ``width`` fields, or None; stray delimiters inside the text are rejoined."""
    extra = len(row) - width
    if extra > 0 and rejoin_text:
        return row[:text_col] + [delimiter.join(row[text_col:text_col + extra + 1])] + row[text_col + extra + 1:]
    return row if extra == 0 else None


def _labels(raw, label_separator, label_names):
    """Label names of a raw label cell; ValueError for an unknown index."""
    parts = [p.strip() for p in (raw.split(label_separator) if label_separator else [raw])]
    labels = list(dict.fromkeys(p for p in parts if p))
    if label_names is not None:
        if not all(p.isdigit() and int(p) < len(label_names) for p in labels):
            raise ValueError(f"label {raw!r} is not a list of indices into the {len(label_names)} label names")
        labels = [label_names[int(p)] for p in labels]
    return labels


@register_reader("text_table", layout="a CSV/TSV file (option 'path') with a text and a label column")
def read_text_table(root, *, path=None, text_column=None, label_column=None, id_column=None, group_column=None,
                    split_column=None, delimiter=",", header=True, quoting=True, encoding="utf-8", lang="en",
                    multi_label="first", label_separator=None, label_names=None, skip_texts=(),
                    rejoin_text=False, replace=None):
    """Rows of a delimited text table as text-only items.

    ``id_column``: default ``<file stem>-<row number>``; ``group_column``: default the item id
    (no writer information: folds are then not writer-independent); ``split_column`` or a
    ``{split: file}`` ``path`` set the split.  ``label_separator`` makes the label cell a list;
    ``multi_label`` then decides rows with several labels: ``first`` label, ``drop`` the row,
    or ``duplicate`` it once per label (ids ``<id>#<label>``).  ``label_names``: a file (relative
    to root) with one label name per line, the label cells being 0-based indices into it.
    ``skip_texts``: regular expressions; a text that fully matches one (lower-cased, brackets
    and punctuation removed) is a placeholder and skipped.  ``rejoin_text``: a row with more
    fields than the header has unquoted delimiters inside its text, which are joined back.
    ``replace``: literal text replacements applied in order (then whitespace is collapsed).
    """
    for option, value in (("path", path), ("text_column", text_column), ("label_column", label_column)):
        if value is None:
            raise EmotionMXError(f"reader 'text_table': option '{option}' is required")
    check_choice(multi_label, "multi_label", MULTI_LABEL)
    sources = dict(path) if isinstance(path, Mapping) else {None: path}
    names = None
    if label_names is not None:
        names_path = os.path.join(root, label_names)
        if not os.path.isfile(names_path):
            raise LayoutError(f"no label names file {label_names} under {root}")
        names = [line.strip() for line in read_text(names_path).splitlines() if line.strip()]
    placeholder = re.compile("|".join(f"(?:{p})" for p in skip_texts)) if skip_texts else None
    for split_name, rel_path in sources.items():
        split = norm_split(split_name) if split_name is not None else None
        if split_name is not None and split is None:
            raise EmotionMXError(f"reader 'text_table': option 'path': unknown split {split_name!r} "
                                 f"(use train, valid/dev, test)")
        full = os.path.join(root, rel_path)
        if not os.path.isfile(full):
            raise LayoutError(f"no {rel_path} under {root}")
        rows = csv_rows(full, delimiter=delimiter, quoting=quoting, encoding=encoding)
        head = [h.strip() for h in rows.pop(0)] if header and rows else None
        width = len(head) if head is not None else None
        cols = {key: _column(spec, head, option, rel_path) for key, spec, option in (
            ("text", text_column, "text_column"), ("label", label_column, "label_column"),
            ("id", id_column, "id_column"), ("group", group_column, "group_column"),
            ("split", split_column, "split_column")) if spec is not None}
        stem = os.path.splitext(os.path.basename(rel_path))[0]
        for n, row in enumerate(rows, 2 if head is not None else 1):
            where = f"{rel_path}:{n}"
            if not any(cell.strip() for cell in row):
                continue
            fixed = _fix_row(row, width, cols["text"], delimiter, rejoin_text) if width else row
            if fixed is None or len(fixed) <= max(cols.values()):
                yield Skip(where, f"bad row: {len(row)} fields" + (f", header has {width}" if width else ""))
                continue
            cell = {key: fixed[i].strip() for key, i in cols.items()}
            item_id = cell.get("id") or f"{stem}-{n}"
            text = fixed[cols["text"]]
            for old, new in (replace or {}).items():
                text = text.replace(old, new)
            text = " ".join(text.split())
            row_split = norm_split(cell["split"]) if "split" in cell else split
            try:
                labels = _labels(cell["label"], label_separator, names)
            except ValueError as e:
                yield Skip(item_id, str(e))
                continue
            if not text or not labels:
                yield Skip(item_id, "empty text" if not text else "no label")
            elif placeholder and placeholder.fullmatch(_normalise(text)):
                yield Skip(item_id, f"placeholder text {text!r}")
            elif "split" in cell and row_split is None:
                yield Skip(item_id, f"unknown split {cell['split']!r}")
            elif len(labels) > 1 and multi_label == "drop":
                yield Skip(item_id, f"multi-label row ({', '.join(labels)}); multi_label policy 'drop'")
            else:
                group = cell.get("group") or item_id
                chosen = labels if multi_label == "duplicate" else labels[:1]
                for label in chosen:
                    yield Utterance(id=item_id if len(chosen) == 1 else f"{item_id}#{label}", label=label,
                                    group=group, split=row_split, text=text, lang=lang)


# ISEAR answers that describe no situation ("[ No response.]", "Doesn't apply.", ...).
ISEAR_PLACEHOLDERS = (
    r"no (response|reponse|description)",
    r"(i have )?(never|not) (felt|experienced)( (this|the) emotion)?( in my life| yet)?",
    r"never",
    r"(i )?(do not|don't|can ?not|can't) (know|remember|recall)( any (incident|situation)( of that kind)?)?",
    r"(i )?(can ?not|can't) think of (anything|any|any situation|anything just now)",
    r"(it )?(doesn't|does not) apply", r"not applicable", r"nothing", r"none",
    r"same as in \w+", r"not included on questionnaire",
)

register_preset(
    "isear", "text_table", layout="isear.csv (pipe-separated; text SIT, label Field1, respondent ID)",
    path="isear.csv", delimiter="|", quoting=False, text_column="SIT", label_column="Field1",
    id_column="MYKEY", group_column="ID", skip_texts=ISEAR_PLACEHOLDERS, rejoin_text=True,
    # 'á' (+ a stray '|') marks the original line breaks; \"...\" and \...\" are quotes
    replace={"á|": " ", "á": " ", '\\"': '"', "\\": '"'})

register_preset(
    "goemotions", "text_table",
    layout="ekman/{train,dev,test}.tsv (text, label indices, comment id; no header) and ekman/labels.txt",
    path={"train": "ekman/train.tsv", "valid": "ekman/dev.tsv", "test": "ekman/test.tsv"},
    delimiter="\t", header=False, quoting=False, text_column=0, label_column=1, id_column=2,
    label_separator=",", label_names="ekman/labels.txt", multi_label="drop")
