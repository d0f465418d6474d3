"""The queuebox dashboard: an ASGI app with pages, a JSON API and Prometheus metrics.

Install it with ``pip install 'queuebox[web]'``; run it with ``queuebox web``, or mount
``create_app()`` inside a FastAPI, Starlette or Django (ASGI) application under a path. See
``docs/dashboard.md``.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the queuebox dashboard needs the 'web' extra ({exc.name} is missing): "
        "pip install 'queuebox[web]'"
    ) from exc

from queuebox.web.app import Authorize, create_app, create_metrics_app
from queuebox.web.security import BasicAuth, parse_credentials

__all__ = ["Authorize", "BasicAuth", "create_app", "create_metrics_app", "parse_credentials"]
