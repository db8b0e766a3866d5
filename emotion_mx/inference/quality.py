"""Load-adaptive quality for streaming: levels as data, and the controller that moves between them.

The stream watches its own **load** after every window: ``max(latency, lag)``, where latency is
the window's processing time and lag how far the output is behind the window's end in stream
time (realtime or live streams only).  Against ``--latency-budget`` (seconds):

* load > budget for ``down_after`` windows in a row → one level down (cheaper);
* load < ``recover_ratio`` × budget for ``up_after`` windows in a row → one level up.

The gap between the two thresholds and the longer wait to recover are the hysteresis: a
stream at the edge of its budget does not flap between levels.  Every window's output says
the level that produced it (``"quality": {"level": i, "name": ...}``).

Levels (cheapest last; each keeps the savings of the ones before):

====  ================  ============  ===========  ===========  =======================
lvl   name              face frames   frame side   detect on    modalities
====  ================  ============  ===========  ===========  =======================
0     full              all (N)       as decoded   every frame  all
1     fewer-frames      N / 2         as decoded   every frame  all
2     small-frames      N / 2         240 px       every frame  all
3     sparse-detection  N / 4         160 px       every 3rd    all
4     drop-modality     N / 4         160 px       every 3rd    the costliest dropped
====  ================  ============  ===========  ===========  =======================

"frame side": frames are downscaled to this longest side before face detection and cropping
(the crop is still resized to the model's input size, from fewer pixels).  "every 3rd": the
face box found on a frame is reused for the next two frames.  Level 4 drops the modality whose
features cost most (measured per window, an exponential average) and exists only when the
stream carries at least two modalities.
"""
import dataclasses
from typing import Optional, Tuple

from ..errors import EmotionMXError


@dataclasses.dataclass(frozen=True)
class Level:
    name: str
    frame_fraction: float       # share of the model's face frames sampled per window
    frame_side: int             # longest side of frames before face detection (0: as decoded)
    detect_every: int           # face detection on every k-th frame (box reused in between)
    drop_costliest: bool        # leave out the modality whose features cost most


LEVELS = (
    Level("full", 1.0, 0, 1, False),
    Level("fewer-frames", 0.5, 0, 1, False),
    Level("small-frames", 0.5, 240, 1, False),
    Level("sparse-detection", 0.25, 160, 3, False),
    Level("drop-modality", 0.25, 160, 3, True),
)


class QualityController:
    """Chooses the level of the next window from the load of the last ones.

    ``budget``: seconds (None: adaptation off, always level 0); ``levels``: how many of
    :data:`LEVELS` may be used (4 without a droppable modality).
    """

    def __init__(self, budget=None, levels=len(LEVELS), down_after=1, up_after=3, recover_ratio=0.5):
        if budget is not None and not budget > 0:
            raise EmotionMXError(f"--latency-budget must be positive, got {budget}")
        if not 0 < recover_ratio < 1:
            raise EmotionMXError("recover_ratio must be in (0, 1)")
        self.budget, self.max_level = budget, max(0, min(levels, len(LEVELS)) - 1)
        self.down_after, self.up_after, self.recover_ratio = int(down_after), int(up_after), float(recover_ratio)
        self.level = 0
        self._over = self._under = 0
        self.changes = []            # (window index, old level, new level, load seconds)

    @property
    def current(self) -> Level:
        return LEVELS[self.level]

    def observe(self, window_index, latency, lag=0.0) -> Optional[Tuple[int, int]]:
        """Record one window's latency and lag (seconds); returns ``(old, new)`` on a change."""
        if self.budget is None:
            return None
        load = max(latency, lag)
        if load > self.budget:
            self._over, self._under = self._over + 1, 0
        elif load < self.recover_ratio * self.budget:
            self._under, self._over = self._under + 1, 0
        else:
            self._over = self._under = 0
        old = self.level
        if self._over >= self.down_after and self.level < self.max_level:
            self.level += 1
            self._over = 0
        elif self._under >= self.up_after and self.level > 0:
            self.level -= 1
            self._under = 0
        if self.level != old:
            self.changes.append((window_index, old, self.level, round(load, 4)))
            return old, self.level
        return None
