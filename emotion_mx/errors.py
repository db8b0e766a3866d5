"""Exception types shared by every stage.

Every tool catches :class:`EmotionMXError` at the CLI boundary and prints its message as one
line (no traceback).  :class:`BadItem` is raised for a problem with one utterance (missing
file, corrupt audio, no transcript...): dataset building records it as a skipped item with the
reason, or fails on it with ``--strict``.
"""


class EmotionMXError(Exception):
    """An error a user can act on; its message is printed as one line."""


class ConfigError(EmotionMXError):
    """A configuration file is invalid (unknown key, wrong type...)."""


class BadItem(EmotionMXError):
    """One input item cannot be used; ``reason`` says why and what to do."""

    def __init__(self, reason, item_id=None):
        self.reason = str(reason)
        self.item_id = item_id
        super().__init__(f"{item_id}: {reason}" if item_id else str(reason))

    def with_id(self, item_id):
        return BadItem(self.reason, item_id=item_id)
