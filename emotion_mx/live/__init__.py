"""The live page: browser camera + microphone (or a dropped file) → WebSocket → the streaming
pipeline (:class:`emotion_mx.inference.stream.StreamRunner`) → emotions per window.

``router`` (a FastAPI ``APIRouter``) serves the page, its static files and the WebSocket; mount
it at ``/live`` and call :func:`configure` (or set ``app.state.live_model_dir``, or the
``EMOTION_MX_LIVE_MODEL`` environment variable) to name the exported model.
``emotion-mx live --model DIR`` (:mod:`.command`) serves an app with only this router.
:mod:`.protocol` validates every WebSocket message at the edge (fields, timestamps against the
stream's own clock, sizes, rates) and names the field at fault in one JSON error.
"""
from .server import configure, create_app, router

__all__ = ["router", "configure", "create_app"]
