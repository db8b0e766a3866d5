"""Models behind the service: load once per process, warm up, answer with retries and fallback.

Each model (the primary and the optional fallback) owns one inference thread: MXNet's Gluon
blocks are not safe to call from several threads at once, while two models in two threads are
(checked: 200 interleaved calls gave the same numbers as sequential ones).  The event loop only
waits on those threads, so ``/health`` and ``/metrics`` answer while a model works.

A request (one item or a batch) goes:

1. to the primary, ``timeout`` seconds per attempt; a failure (any exception that is not an
   :class:`~emotion_mx.api.InputError`) is retried up to ``retries`` times; a timeout is not
   retried on the primary (its thread is still busy with the timed-out call, a retry would wait
   behind it) and goes straight to step 2;
2. to the fallback, if there is one, with inputs of modalities it lacks dropped (an audio-only
   fallback answers from the audio when the face path fails);
3. bad input (:class:`~emotion_mx.api.InputError`) is never retried nor sent to the fallback:
   it is the client's to fix (HTTP 422).

The answer names the model that served it (``served_by``: ``primary`` / ``fallback``).

Fault injection (tests and benchmarks only): ``EMOTION_MX_SERVE_FAULTS="fail=0.3,slow=0.1,
slow_s=5,seed=0"`` makes the *primary* model (after preprocessing, so bad input is still
rejected first) raise on a fraction ``fail`` of its calls and sleep
``slow_s`` seconds on a fraction ``slow`` (a stand-in for a hung model).  Unset, nothing is injected.
"""
import asyncio
import concurrent.futures as cf
import logging
import os
import random
import threading
import time

from ..api import InputError
from ..errors import EmotionMXError
from .settings import FAULTS_ENV

log = logging.getLogger(__name__)


class ServiceError(EmotionMXError):
    """An answer other than a prediction: HTTP ``status``, machine-readable ``code``."""
    status, code = 500, "internal_error"

    def __init__(self, message, retry_after=None, **extra):
        super().__init__(message)
        self.retry_after, self.extra = retry_after, extra


class Overloaded(ServiceError):
    status, code = 429, "overloaded"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class ModelFailed(ServiceError):
    status, code = 503, "model_failed"


class ModelTimeout(ServiceError):
    status, code = 504, "timeout"


class InjectedFault(RuntimeError):
    """Raised by :class:`Faults` (test-only fault injection)."""


class Faults:
    """Test-only faults of the primary model, from ``EMOTION_MX_SERVE_FAULTS`` (see module doc)."""
    KEYS = {"fail": float, "slow": float, "slow_s": float, "seed": int}

    def __init__(self, spec=None):
        self.fail = self.slow = 0.0
        self.slow_s, seed = 5.0, 0
        for part in filter(None, (spec or "").replace(";", ",").split(",")):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in self.KEYS:
                raise EmotionMXError(f"{FAULTS_ENV}: unknown key '{key}' (use {', '.join(self.KEYS)})")
            v = self.KEYS[key](value)
            if key == "seed":
                seed = v
            else:
                setattr(self, key, v)
        self.active = bool(self.fail or self.slow)
        self._rng = random.Random(seed * 100003 + os.getpid())

    @classmethod
    def from_env(cls):
        return cls(os.environ.get(FAULTS_ENV))

    def __call__(self):
        if not self.active:
            return
        if self._rng.random() < self.fail:
            raise InjectedFault(f"injected fault ({FAULTS_ENV})")
        if self._rng.random() < self.slow:
            time.sleep(self.slow_s)


def _threads_env(threads):
    """``EMOTION_MX_THREADS`` = ``threads`` while the models load (their ORT sessions read it),
    restored afterwards (an Engine in a test process leaves the environment as it was)."""
    from unittest import mock
    from .settings import THREADS_ENV
    return mock.patch.dict(os.environ, {THREADS_ENV: str(int(threads))})


class Slot:
    """One loaded model and its inference thread."""

    def __init__(self, role, model_dir, batch_size, faults=None, runtime="auto"):
        from ..api import EmotionRecognizer
        self.role, self.model_dir = role, model_dir
        self.rec = EmotionRecognizer.load(model_dir, batch_size=batch_size, runtime=runtime)
        self.faults = faults
        self.executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"emx-{role}")

    def run(self, items, batch, strict):
        prepared = self.rec.prepare(items, strict=strict, batch=batch)   # bad input fails here
        if self.faults is not None:
            self.faults()                                                  # test-only: the model fails
        return self.rec.run(prepared, batch_size=None if batch else 1)

    def describe(self):
        out = dict(self.rec.describe(), role=self.role, folder=os.path.basename(os.path.normpath(self.model_dir)))
        ort = getattr(getattr(self.rec, "_model", None), "ort", None)
        if ort is not None:
            out["threads"] = ort.threads          # intra-op threads of this worker's ORT session
        return out

    def close(self):
        self.executor.shutdown(wait=False, cancel_futures=True)


class Engine:
    """Primary (+ fallback) models of one process; see the module docstring for the flow."""

    def __init__(self, settings, metrics=None, faults=None):
        self.settings = settings
        self.metrics = metrics
        self.faults = Faults.from_env() if faults is None else faults
        self.primary = self.fallback = None
        self.ready = False
        self.load_error = None
        self.inflight = 0
        self._loader = None

    # -- loading -------------------------------------------------------------------------
    def load(self):
        s = self.settings
        t0 = time.perf_counter()
        # ORT sessions with cores / workers intra-op threads, no spinning (ort_runtime.session_options);
        # MXNet's OMP pool got the same count from OMP_NUM_THREADS, set by `emotion-mx serve`
        # before uvicorn started this worker (ServeSettings.worker_env)
        with _threads_env(s.session_threads()):
            primary = Slot("primary", s.model, s.batch_size, faults=self.faults if self.faults.active else None,
                           runtime=s.runtime)
            # the fallback (often an INT8 or audio-only folder without model.onnx) takes its own fastest
            fallback = Slot("fallback", s.fallback, s.batch_size, runtime="auto") if s.fallback else None
        if s.warmup:
            for slot in filter(None, (primary, fallback)):
                slot.rec.warm_up()
        self.primary, self.fallback = primary, fallback
        self.ready = True
        log.info("pid %d: models loaded and warmed up in %.1f s (primary %s, fallback %s)", os.getpid(),
                 time.perf_counter() - t0, s.model, s.fallback or "none")

    def load_or_record(self):
        """:meth:`load`; a failure is recorded (reported by /ready and /predict), not raised."""
        try:
            self.load()
        except Exception as e:   # the process stays up and says why
            self.load_error = str(e) if isinstance(e, EmotionMXError) else f"{type(e).__name__}: {e}"
            log.error("model loading failed: %s", self.load_error)

    def start_loading(self):
        """Load in a background thread: /health answers at once, /ready when loaded."""
        self._loader = threading.Thread(target=self.load_or_record, name="emx-load", daemon=True)
        self._loader.start()

    def close(self):
        for slot in filter(None, (self.primary, self.fallback)):
            slot.close()

    # -- answering -----------------------------------------------------------------------
    def admit(self):
        """Count a request in, or refuse it (429) when ``max_queue`` are already in."""
        if not self.ready:
            if self.load_error:
                raise NotReady(f"the model could not be loaded: {self.load_error}")
            raise NotReady("the model is still loading", retry_after=2)
        if self.inflight >= self.settings.max_queue:
            raise Overloaded(f"{self.inflight} requests in progress (limit {self.settings.max_queue}); retry later",
                             retry_after=1)
        self.inflight += 1

    def release(self):
        self.inflight -= 1

    async def _attempt(self, slot, items, batch, strict):
        fut = slot.executor.submit(slot.run, items, batch, strict)
        return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.settings.timeout)

    def _count(self, name, **labels):
        if self.metrics is not None:
            self.metrics.count(name, **labels)

    async def predict(self, items, batch=False):
        """``(results, info)``: ``results`` a list of EmotionResult, ``info`` with ``served_by``,
        ``attempts`` and, after a fallback, ``fallback_reason``."""
        errors, attempts = [], 0
        timed_out = False
        for attempt in range(1 + max(0, self.settings.retries)):
            attempts += 1
            try:
                results = await self._attempt(self.primary, items, batch, strict=True)
                self._count("attempts", model="primary", outcome="ok")
                return results, {"served_by": "primary", "attempts": attempts}
            except InputError:
                self._count("attempts", model="primary", outcome="bad_input")
                raise
            except asyncio.TimeoutError:
                self._count("attempts", model="primary", outcome="timeout")
                errors.append(f"timed out after {self.settings.timeout:g} s")
                timed_out = True
                break
            except Exception as e:
                self._count("attempts", model="primary", outcome="error")
                errors.append(_one_line(e))
                log.warning("primary model failed (attempt %d): %s", attempt + 1, errors[-1])
                if attempt < self.settings.retries:
                    self._count("retries")
        reason = f"primary: {errors[-1]}" if errors else "primary failed"
        if self.fallback is None:
            if timed_out:
                raise ModelTimeout(f"the model did not answer within {self.settings.timeout:g} s", attempts=attempts)
            raise ModelFailed(f"the model failed {attempts} time(s): {errors[-1]}", attempts=attempts)
        self._count("fallbacks")
        try:
            results = await self._attempt(self.fallback, items, batch, strict=False)
        except InputError as e:
            if e.argument.endswith("inputs") and "none of the inputs" in e.reason:
                raise ModelFailed(f"{reason}; the fallback model takes only "
                                  f"{', '.join(self.fallback.rec.modalities)}", attempts=attempts) from None
            self._count("attempts", model="fallback", outcome="bad_input")
            raise
        except asyncio.TimeoutError:
            self._count("attempts", model="fallback", outcome="timeout")
            raise ModelTimeout(f"{reason}; the fallback did not answer within {self.settings.timeout:g} s",
                               attempts=attempts + 1) from None
        except Exception as e:
            self._count("attempts", model="fallback", outcome="error")
            raise ModelFailed(f"{reason}; fallback: {_one_line(e)}", attempts=attempts + 1) from None
        self._count("attempts", model="fallback", outcome="ok")
        return results, {"served_by": "fallback", "attempts": attempts + 1, "fallback_reason": reason}


def _one_line(e):
    from ..artifacts import first_error_line
    return f"{type(e).__name__}: {first_error_line(e)}" if str(e) else type(e).__name__
