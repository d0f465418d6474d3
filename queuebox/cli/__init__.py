"""The ``queuebox`` command: a thin click layer over configuration, workers and stores.

Commands live beside this module by theme: ``work.py`` (``work``, ``workoff``),
``processes.py`` (``start``, ``stop``, ``restart``), ``inspection.py`` (``status``, ``jobs``,
``show``), ``admin.py`` (``clear``, ``retry``, ``delete``, ``migrate``), ``flow.py``
(``cancel``, ``pause``, ``resume``) and ``web.py`` (``web``, the dashboard). ``common.py``
holds the group, its options, and the one way every command finds its store.
"""

from __future__ import annotations

from queuebox.cli import admin, flow, inspection, processes, web, work
from queuebox.cli.common import cli, main

__all__ = ["admin", "cli", "flow", "inspection", "main", "processes", "web", "work"]
