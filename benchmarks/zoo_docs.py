"""Write docs/zoo.md: docs/zoo_intro.md followed by every zoo model's card (the shipped JSON).

    .venv/bin/python benchmarks/zoo_docs.py          # after `emotion-mx zoo build NAME`
    .venv/bin/python benchmarks/zoo_docs.py --check  # exit 1 if docs/zoo.md is out of date (a test runs it)
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from emotion_mx.zoo.cards import CARDS, read_measured  # noqa: E402
from emotion_mx.zoo.report import card_markdown  # noqa: E402

ORDER = ("speech", "text", "face", "multimodal")


def page():
    intro = open(os.path.join(ROOT, "docs", "zoo_intro.md"), encoding="utf-8").read().rstrip()
    cards = [card_markdown(CARDS[n], read_measured(n)) for n in ORDER]
    return intro + "\n\n# Model cards\n\n" + "\n\n".join(cards) + "\n"


if __name__ == "__main__":
    path = os.path.join(ROOT, "docs", "zoo.md")
    text = page()
    if "--check" in sys.argv:
        same = os.path.isfile(path) and open(path, encoding="utf-8").read() == text
        sys.exit(0 if same else "docs/zoo.md is out of date: run python benchmarks/zoo_docs.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
