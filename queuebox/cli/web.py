"""``queuebox web``: the dashboard (or only its ``/metrics``) on a local port.

Safe by default: it binds to 127.0.0.1 and answers only requests addressed to a loopback
name there (so a web page cannot reach it through DNS rebinding); binding anywhere else needs
``--auth USER:PASSWORD`` (or ``QUEUEBOX_WEB_AUTH``) or ``--read-only``. The web extra is
imported only when the command runs, so the rest of the command line works without it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from queuebox.cli.common import cli, echo_store, open_store

__all__ = ["is_loopback", "web"]


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the dashboard on this machine (a host name other
    than localhost may resolve anywhere, so it does not count)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _build(*, read_only: bool, metrics_only: bool, auth: str | None, loopback: bool) -> Any:
    # The web extra is optional: imported here so that every other command works without it.
    try:
        from queuebox.web import (  # noqa: PLC0415
            BasicAuth,
            create_app,
            create_metrics_app,
            parse_credentials,
        )
        from queuebox.web.security import LoopbackHostsOnly  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    adapter = open_store()
    app: Any = (
        create_metrics_app(adapter) if metrics_only else create_app(adapter, read_only=read_only)
    )
    if auth is not None:
        try:
            user, password = parse_credentials(auth)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        app = BasicAuth(app, user, password)
    if loopback:
        app = LoopbackHostsOnly(app)
    return app


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8484, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--auth",
    metavar="USER:PASSWORD",
    envvar="QUEUEBOX_WEB_AUTH",
    help="Require HTTP basic authentication (also QUEUEBOX_WEB_AUTH, which keeps the "
    "password out of the process list; prefer it).",
)
@click.option("--read-only", is_flag=True, help="Show everything, allow no action.")
@click.option(
    "--metrics-only",
    is_flag=True,
    help="Serve only /metrics (a sidecar for Prometheus); it can change nothing.",
)
def web(host: str, port: int, auth: str | None, read_only: bool, metrics_only: bool) -> None:
    """Serve the dashboard, its JSON API and /metrics (needs the web extra:
    pip install 'queuebox[web]')."""
    loopback = is_loopback(host)
    if not loopback and auth is None and not read_only and not metrics_only:
        raise click.ClickException(
            f"--host {host} makes the dashboard reachable from other machines, where anyone "
            "could retry, cancel and delete jobs: add --auth USER:PASSWORD (or set "
            "QUEUEBOX_WEB_AUTH), or --read-only, or bind to 127.0.0.1"
        )
    app = _build(read_only=read_only, metrics_only=metrics_only, auth=auth, loopback=loopback)
    import uvicorn  # noqa: PLC0415 - the web extra, as above

    echo_store(err=True)
    shown = f"[{host}]" if ":" in host else host
    what = "metrics" if metrics_only else "dashboard"
    path = "/metrics" if metrics_only else "/"
    mode = " (read-only)" if read_only and not metrics_only else ""
    click.echo(f"{what}: http://{shown}:{port}{path}{mode}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
