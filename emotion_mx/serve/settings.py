"""Service settings: one frozen dataclass, handed to every uvicorn worker / Ray replica as JSON
(environment variable :data:`ENV`), so each process loads the same models the same way."""
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..config import from_dict

ENV = "EMOTION_MX_SERVE_SETTINGS"
# Fault injection for tests and benchmarks only (see engine.Faults); never set in production.
FAULTS_ENV = "EMOTION_MX_SERVE_FAULTS"
# Intra-op threads of a process's ONNX Runtime sessions (read by ort_runtime.default_threads).
THREADS_ENV = "EMOTION_MX_THREADS"


@dataclass(frozen=True)
class ServeSettings:
    model: str                          # exported model folder (fp32 or INT8)
    fallback: Optional[str] = None      # served when the primary fails or times out
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1                    # uvicorn worker processes (each loads the models)
    threads: Optional[int] = None       # intra-op threads per worker (ORT sessions, MXNet's OMP); None: cores // workers
    timeout: float = 30.0               # seconds per model attempt
    retries: int = 1                    # extra primary attempts after a failure (not after a timeout)
    max_queue: int = 16                 # requests admitted per worker (running + waiting); more → 429
    max_request_bytes: int = 20_000_000  # larger bodies → 413
    max_batch: int = 32                 # items per /predict/batch request
    batch_size: int = 8                 # rows per forward pass of a batch
    warmup: bool = True
    runtime: str = "auto"               # mxnet | onnxruntime | auto (the faster one measured, runtime.json)
    api_key: Optional[str] = field(default=None, repr=False)   # None: no authentication (security.check_bind)
    cors_origins: Tuple[str, ...] = ()  # origins allowed to call from a browser page; () = CORS closed

    def __post_init__(self):
        from ..deploy.ort_runtime import CHOICES
        from ..errors import EmotionMXError
        if self.runtime not in CHOICES:
            raise EmotionMXError(f"runtime '{self.runtime}' is not one of {', '.join(CHOICES)}")
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) != self.threads
                                         or self.threads < 1):
            raise EmotionMXError(f"threads {self.threads!r}: expected a positive integer")

    def session_threads(self):
        """Intra-op threads of each worker's ONNX Runtime sessions and MXNet OMP pool: ``threads``,
        else the usable cores divided among the workers (``ort_runtime.default_threads``;
        ``EMOTION_MX_THREADS`` overrides that)."""
        from ..deploy.ort_runtime import default_threads
        return int(self.threads or default_threads(self.workers))

    def worker_env(self):
        """The environment each worker process needs before it imports MXNet or ONNX Runtime."""
        n = str(self.session_threads())
        return {"OMP_NUM_THREADS": n, THREADS_ENV: n}

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text, source=ENV):
        return from_dict(cls, json.loads(text), source=source)

    @classmethod
    def from_env(cls):
        text = os.environ.get(ENV)
        if not text:
            from ..errors import EmotionMXError
            raise EmotionMXError(f"{ENV} is not set; start the service with `emotion-mx serve --model DIR`")
        return cls.from_json(text)
