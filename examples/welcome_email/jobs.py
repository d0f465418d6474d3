"""Jobs of the example app. Workers import this module (``app`` in queuebox.toml)."""

from __future__ import annotations

from queuebox import Job
from welcome_email import mailer

USERS = {
    1: ("Ada Lovelace", "ada@example.com"),
    2: ("Alan Turing", "alan@example.com"),
    3: ("Grace Hopper", "grace@example.com"),
}


class SendWelcomeEmailJob(Job):
    queue = "email"

    def perform(self, user_id: int) -> None:
        name, email = USERS[user_id]
        mailer.send(
            to=email,
            subject="Welcome!",
            body=f"Hello {name},\n\nthanks for signing up. A queuebox job sent this message.",
        )
