"""The REST service (``emotion-mx serve`` / ``python -m emotion_mx.serve``).

* :mod:`.settings` — ``ServeSettings`` (frozen; passed to uvicorn workers and Ray replicas as JSON);
* :mod:`.engine`  — loaded models (primary + optional fallback), one inference thread each,
  retries, timeout, fallback, admission limit, test-only fault injection;
* :mod:`.media`   — request bodies (multipart or JSON with base64) → ``EmotionRecognizer`` inputs;
* :mod:`.app`     — the FastAPI application (``/predict``, ``/predict/batch``, ``/health``,
  ``/ready``, ``/model``, ``/metrics``);
* :mod:`.command` — the click command; :mod:`.ray_app` — the same app as a Ray Serve deployment.

FastAPI, uvicorn, python-multipart and prometheus-client are the ``[serve]`` extra: a missing
one fails with one line naming it (:func:`require`).
"""
from ..optional import require as _require

EXTRA_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart",
                 "prometheus_client": "prometheus-client"}


def require(*modules):
    """Import check for the ``[serve]`` extra: one line naming the missing package and the extra
    (:func:`emotion_mx.optional.require`)."""
    for mod in modules or tuple(EXTRA_MODULES):
        _require(mod, "serve", f"the REST service ({EXTRA_MODULES.get(mod, mod)})")
