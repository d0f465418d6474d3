"""The HTML of each page: a small shell that ``static/dashboard.js`` fills from the JSON API.

The shell holds no job data at all; what it does hold (the mount path, the store's name with
its secrets hidden, the CSRF token) is escaped. The script renders every value with
``textContent``, never as markup, and the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

from html import escape

__all__ = ["PAGES", "page_html"]

#: Page name -> (title, path below the mount point).
PAGES = {
    "overview": ("Overview", "/"),
    "jobs": ("Jobs", "/jobs"),
    "workers": ("Workers", "/workers"),
    "recurring": ("Recurring", "/recurring"),
}


def page_html(
    page: str,
    *,
    base: str,
    csrf_token: str,
    store: str,
    read_only: bool,
    job_id: str | None = None,
    static_version: str = "",
) -> str:
    """The shell of ``page`` (a key of ``PAGES``, or ``"job"``) mounted at ``base``."""
    title = "Job" if page == "job" else PAGES[page][0]
    links = "".join(
        f'<a href="{escape(base + path)}"'
        + (' aria-current="page"' if name == page or (page == "job" and name == "jobs") else "")
        + f">{escape(label)}</a>"
        for name, (label, path) in PAGES.items()
    )
    badge = '<span class="badge">read-only</span>' if read_only else ""
    job = f' data-job-id="{escape(job_id)}"' if job_id is not None else ""
    static = f"{base}/static"
    version = f"?v={escape(static_version)}" if static_version else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="queuebox-csrf" content="{escape(csrf_token)}">
<meta name="queuebox-base" content="{escape(base)}">
<title>{escape(title)} · queuebox</title>
<link rel="icon" href="{escape(static)}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{escape(static)}/dashboard.css{version}">
<script src="{escape(static)}/dashboard.js{version}" defer></script>
</head>
<body data-page="{escape(page)}"{job}>
<header>
<div class="brand"><a href="{escape(base)}/">queuebox</a>{badge}</div>
<nav>{links}</nav>
<div class="store" title="the store this dashboard reads">{escape(store)}</div>
</header>
<main id="main">
<noscript><p class="note">The dashboard needs JavaScript to show its pages; the JSON is at
<a href="{escape(base)}/api/overview">api/overview</a>.</p></noscript>
<p class="loading">Loading…</p>
</main>
<div id="status" role="status" aria-live="polite"></div>
</body>
</html>
"""
