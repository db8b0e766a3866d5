"""Progress of long steps (building a store, training epochs, embedding, head training).

On a terminal a tqdm bar; otherwise (output to a file or a pipe: CI logs, ``nohup``, ``| tee``)
one line every ``$EMOTION_MX_PROGRESS_SECONDS`` seconds (default 30) and a last one when the
step ends, if it took that long: a long step is never silent, a short one adds nothing::

    features: 120/500 items (24%), 1m05s elapsed, about 3m26s left
    features: 500/500 items (100%), done in 4m12s
"""
import math
import os
import sys
import time

from .errors import EmotionMXError

__all__ = ["Progress", "INTERVAL_ENV"]

INTERVAL_ENV = "EMOTION_MX_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def _interval():
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise EmotionMXError(f"${INTERVAL_ENV}={raw!r}: give the seconds between progress lines (a number >= 0, "
                             f"e.g. {DEFAULT_INTERVAL:g}), or unset it")
    return value


def _clock(seconds):
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """``total`` steps of ``unit`` named ``desc``: ``update(n)``, ``set_postfix(**values)``,
    ``close()`` (also a context manager); iterating it walks ``iterable`` (total: its length),
    one step per element.  ``enabled=False`` shows nothing."""

    def __init__(self, total, desc, unit="item", enabled=True, stream=None, iterable=None):
        if total is None:
            total = len(iterable)
        self.iterable = iterable
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.n, self.postfix, self.lines = 0, {}, 0
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=self.stream)
        self.interval = _interval() if enabled else None
        self.t0 = self.last = time.monotonic()

    def update(self, n=1):
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            self._maybe_line()

    def set_postfix(self, refresh=False, **values):
        """Values shown after the count; ``refresh``: also a chance to print (e.g. per epoch of
        one long step), else they wait for the next update."""
        self.postfix = dict(values)
        if self.bar is not None:
            self.bar.set_postfix(refresh=refresh, **values)
        elif refresh:
            self._maybe_line()

    def _maybe_line(self):
        if not self.enabled or self.bar is not None or (self.total and self.n >= self.total):
            return                                   # the end is said once, by close()
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def _line(self, now, done=False):
        elapsed = now - self.t0
        plural = self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        text = f"{self.desc}: {self.n}/{self.total} {plural}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        if done:
            text += f", done in {_clock(elapsed)}"
        else:
            text += f", {_clock(elapsed)} elapsed"
            if self.total and 0 < self.n < self.total:
                text += f", about {_clock(elapsed * (self.total - self.n) / self.n)} left"
        if self.postfix:
            text += ", " + ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(text, file=self.stream, flush=True)
        self.lines += 1

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and (self.lines or time.monotonic() - self.t0 >= self.interval):
            self._line(time.monotonic(), done=True)
        self.enabled = False

    def __iter__(self):
        try:
            for x in self.iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

