"""The REST service (``emotion-mx serve`` / ``python -m emotion_mx.serve``).

* :mod:`.settings` — ``ServeSettings`` (frozen; passed to uvicorn workers and Ray replicas as JSON);
* :mod:`.engine`  — loaded models (primary + optional fallback), one inference thread each,
  retries, timeout, fallback, admission limit, test-only fault injection;
* :mod:`.media`   — request bodies (multipart or JSON with base64) → ``EmotionRecognizer`` inputs;
* :mod:`.app`     — the FastAPI application (``/predict``, ``/predict/batch``, ``/health``,
  ``/ready``, ``/model``, ``/metrics``);
* :mod:`.http`    — the JSON error format for every error (also the framework's), path
  scrubbing, the body-size limit and bounded JSON nesting;
* :mod:`.security` — the optional API key, the bind check (a key off loopback) and CORS;
* :mod:`.command` — the click command; :mod:`.ray_app` — the same app as a Ray Serve deployment.

FastAPI, uvicorn, python-multipart and prometheus-client are the ``[serve]`` extra: a missing
one fails with one line naming it (:func:`require`).
"""
SERVE_MODULES = ("fastapi", "uvicorn", "multipart", "prometheus_client")


def require(*modules):
    """Import check for the ``[serve]`` extra (:func:`emotion_mx.optional.require`): one line
    naming what is missing and the extra to install."""
    from ..optional import require as require_extra
    for mod in modules or SERVE_MODULES:
        require_extra(mod, "serve", feature="the REST service")
