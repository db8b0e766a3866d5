"""``python -m emotion_mx VERB ...`` = the ``emotion-mx`` console script."""
from .cli import entry

if __name__ == "__main__":
    entry()
