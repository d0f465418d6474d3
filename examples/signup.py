"""The "application": users sign up and welcome emails are scheduled for later.

Run it from this folder (``python signup.py``), then ``queuebox workoff`` sends them.
"""

from __future__ import annotations

from welcome_email.jobs import USERS, SendWelcomeEmailJob


def main() -> None:
    for user_id in USERS:
        record = SendWelcomeEmailJob.perform_later(user_id)
        print(f"scheduled job {record.id}: {record.name}({user_id}) on queue {record.queue!r}")
    # A reminder an hour from now: `queuebox workoff` leaves it scheduled.
    later = SendWelcomeEmailJob.set(wait=3600, priority=90).perform_later(1)
    print(f"scheduled job {later.id} to run at {later.run_at:%H:%M} UTC")


if __name__ == "__main__":
    main()
