"""``Record``: the base of the typed metadata (data settings, run spec): a frozen dataclass that
also reads as a read-only mapping of its set (non-None) fields in their JSON layout (tuples
as lists), so ``spec["labels"]`` and ``**settings`` keep working for callers written against
the JSON files; attribute access gives the typed values."""
import dataclasses
from collections.abc import Mapping

from .errors import EmotionMXError


def plain(value):
    """JSON-ready copy: records and mappings → dicts, tuples → lists."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Record(Mapping):
    def __getitem__(self, key):
        value = getattr(self, key, None) if key in self.field_names() else None
        if value is None:
            raise KeyError(key)
        return list(value) if isinstance(value, tuple) else value

    def __iter__(self):
        return (n for n in self.field_names() if getattr(self, n) is not None)

    def __len__(self):
        return sum(1 for _ in self)

    @classmethod
    def field_names(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self):
        return {k: plain(v) for k, v in self.items()}

    @classmethod
    def check_keys(cls, data, where):
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise EmotionMXError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(cls.field_names())})")
