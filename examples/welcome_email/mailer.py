"""A stand-in mailer: each message becomes a file in the outbox folder, not a real email."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path


def outbox() -> Path:
    folder = Path(os.environ.get("OUTBOX_DIR", "outbox"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def send(*, to: str, subject: str, body: str) -> Path:
    stamp = datetime.now(UTC)
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", to)
    path = outbox() / f"{stamp:%Y%m%dT%H%M%S%f}-{safe}.eml"
    path.write_text(
        f"To: {to}\nSubject: {subject}\nDate: {stamp:%a, %d %b %Y %H:%M:%S} +0000\n\n{body}\n"
    )
    return path
