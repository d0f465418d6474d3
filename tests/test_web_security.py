"""The dashboard refuses what it must: cross-site posts, actions in read-only mode or for
users ``authorize`` turns away, script in job data, secrets in the store URL; it mounts
under a path; the command's basic auth and loopback host check guard it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from queuebox import config
from queuebox.backends.base import JobState, NewJob
from queuebox.backends.memory import MemoryAdapter
from queuebox.web import BasicAuth, create_app, parse_credentials
from queuebox.web.security import CONTENT_SECURITY_POLICY, LoopbackHostsOnly

HOSTILE = '</pre><script>alert("pwned")</script><img src=x onerror=alert(1)>'


def store_with_job(*args: Any) -> tuple[MemoryAdapter, str]:
    store = MemoryAdapter()
    handler = json.dumps({"name": "Mail", "args": list(args), "kwargs": {}})
    [job] = store.schedule([NewJob(name="Mail", handler=handler, queue="default", priority=50)])
    return store, job.id


def session(client: TestClient, path: str = "/") -> str:
    assert client.get(path).status_code == 200
    return client.cookies["queuebox_session"]


def cancel(client: TestClient, job_id: str, headers: dict[str, str], **kwargs: Any) -> Any:
    return client.post(f"/api/jobs/{job_id}/cancel", headers=headers, **kwargs)


def test_every_action_needs_the_session_token_and_our_origin() -> None:
    store, job_id = store_with_job(1)
    client = TestClient(create_app(store))
    token = session(client)
    origin = "http://testserver"
    refused: list[tuple[dict[str, str], dict[str, Any], str]] = [
        ({"origin": origin}, {"json": {}}, "CSRF token"),
        ({"origin": origin, "x-csrf-token": "x" * 43}, {"json": {}}, "CSRF token"),
        ({"origin": "https://evil.example", "x-csrf-token": token}, {"json": {}}, "origin"),
        ({"origin": "null", "x-csrf-token": token}, {"json": {}}, "origin"),
        ({"x-csrf-token": token}, {"json": {}}, "neither its Origin nor its Referer"),
        ({"referer": "http://evil.example/x", "x-csrf-token": token}, {"json": {}}, "Referer"),
        (
            {"origin": origin, "x-csrf-token": token, "sec-fetch-site": "cross-site"},
            {"json": {}},
            "Sec-Fetch-Site",
        ),
        ({"origin": origin, "x-csrf-token": token}, {"data": {"a": "b"}}, "JSON posts"),
    ]
    for headers, body, words in refused:
        response = cancel(client, job_id, headers, **body)
        assert response.status_code == 403, headers
        assert words in response.json()["error"], (headers, response.json())
        assert store.get(job_id).state is JobState.READY  # type: ignore[union-attr]
    # A GET never acts.
    assert client.get(f"/api/jobs/{job_id}/cancel").status_code == 405
    # Another browser (no cookie) with a token it saw elsewhere is refused too.
    stranger = TestClient(create_app(store))
    assert (
        cancel(stranger, job_id, {"origin": origin, "x-csrf-token": token}, json={}).status_code
        == 403
    )
    ok = cancel(client, job_id, {"referer": f"{origin}/jobs", "x-csrf-token": token}, json={})
    assert ok.status_code == 200
    assert store.get(job_id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_the_session_cookie_is_http_only_and_same_site_strict() -> None:
    client = TestClient(create_app(MemoryAdapter()))
    cookie = client.get("/").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    # A second page keeps the session: the token in the page stays the cookie's value.
    token = client.cookies["queuebox_session"]
    page = client.get("/jobs")
    assert "set-cookie" not in page.headers
    assert f'name="queuebox-csrf" content="{token}"' in page.text


def test_read_only_refuses_every_action() -> None:
    store, job_id = store_with_job(1)
    client = TestClient(create_app(store, read_only=True))
    token = session(client)
    headers = {"origin": "http://testserver", "x-csrf-token": token}
    assert client.get("/api/meta").json()["can_act"] is False
    for path in (f"/api/jobs/{job_id}/delete", "/api/queues/default/pause", "/api/bulk/jobs"):
        response = client.post(path, json={"action": "delete", "confirm": True}, headers=headers)
        assert response.status_code == 403 and "read-only" in response.json()["error"]
    assert store.get(job_id) is not None and store.paused_queues() == set()
    assert "read-only" in client.get("/").text


@pytest.mark.parametrize("asynchronous", [False, True])
def test_authorize_decides_who_may_act(asynchronous: bool) -> None:
    store, job_id = store_with_job(1)

    def allowed(request: Request) -> bool:
        return request.headers.get("x-user") == "admin"

    async def allowed_async(request: Request) -> bool:
        return allowed(request)

    client = TestClient(create_app(store, authorize=allowed_async if asynchronous else allowed))
    token = session(client)
    headers = {"origin": "http://testserver", "x-csrf-token": token}
    assert client.get("/api/meta").json()["can_act"] is False
    denied = client.post(f"/api/jobs/{job_id}/delete", json={}, headers=headers)
    assert denied.status_code == 403 and store.get(job_id) is not None
    assert client.get("/api/meta", headers={"x-user": "admin"}).json()["can_act"] is True
    done = client.post(
        f"/api/jobs/{job_id}/delete", json={}, headers={**headers, "x-user": "admin"}
    )
    assert done.status_code == 200 and store.get(job_id) is None


def test_hostile_job_data_never_reaches_the_page_as_markup() -> None:
    store, job_id = store_with_job(HOSTILE, {"<key>": HOSTILE})
    client = TestClient(create_app(store))
    page = client.get(f"/jobs/{job_id}")
    # The page shell holds no job data; the script renders it as text (the browser test
    # checks that), and the policy forbids inline script whatever happens.
    assert "pwned" not in page.text and "onerror" not in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert (
        "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    data = client.get(f"/api/jobs/{job_id}")
    assert data.headers["content-type"] == "application/json"
    assert data.json()["job"]["args"] == [HOSTILE, {"<key>": HOSTILE}]
    # A job id that holds markup, in the page's own attributes, is escaped.
    odd = client.get('/jobs/"><img src=x onerror=alert(1)>')
    assert odd.status_code == 200
    assert "<img src=x" not in odd.text and 'data-job-id="&quot;&gt;&lt;img' in odd.text


def test_the_store_url_shows_without_its_password() -> None:
    config.set_command_line(url="redis://:hunter2-secret@127.0.0.1:1/0?password=also-secret")
    client = TestClient(create_app())  # the configured store; the page does not connect
    page = client.get("/").text
    assert "hunter2" not in page and "also-secret" not in page
    assert "127.0.0.1:1/0" in page and "***" in page


def test_mounted_under_a_path_every_link_and_the_cookie_keep_the_prefix() -> None:
    store, job_id = store_with_job(1)

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Mount("/ops/queues", app=create_app(store))])
    client = TestClient(host)
    assert client.get("/").text == "host app"
    page = client.get("/ops/queues/")
    assert page.status_code == 200
    assert 'content="/ops/queues"' in page.text  # the base the script builds URLs from
    assert 'src="/ops/queues/static/dashboard.js' in page.text
    assert 'href="/ops/queues/jobs"' in page.text
    assert "path=/ops/queues/" in page.headers["set-cookie"].lower()
    assert client.get("/ops/queues/static/dashboard.css").status_code == 200
    assert client.get("/ops/queues/api/overview").json()["queues"][0]["ready"] == 1
    token = client.cookies["queuebox_session"]
    response = client.post(
        f"/ops/queues/api/jobs/{job_id}/delete",
        json={},
        headers={"origin": "http://testserver", "x-csrf-token": token},
    )
    assert response.status_code == 200 and store.get(job_id) is None


def test_basic_auth_guards_every_path() -> None:
    app = BasicAuth(create_app(MemoryAdapter()), "ops", "s3cret:with:colons")
    client = TestClient(app)
    for path in ("/", "/api/overview", "/metrics", "/static/dashboard.js"):
        response = client.get(path)
        assert response.status_code == 401 and "Basic" in response.headers["www-authenticate"]
    assert client.get("/", auth=("ops", "wrong")).status_code == 401
    bad = {"authorization": "Basic not-base64!"}
    assert client.get("/", headers=bad).status_code == 401
    assert client.get("/", auth=("ops", "s3cret:with:colons")).status_code == 200
    good = base64.b64encode(b"ops:s3cret:with:colons").decode()
    assert client.get("/metrics", headers={"authorization": f"Basic {good}"}).status_code == 200


def test_credentials_must_be_user_colon_password() -> None:
    assert parse_credentials("ops:pa:ss") == ("ops", "pa:ss")
    for text in ("ops", ":pw", "ops:", ""):
        with pytest.raises(ValueError, match="USER:PASSWORD") as caught:
            parse_credentials(text)
        assert "pw" not in str(caught.value) or text != ":pw"


def test_loopback_binding_answers_only_loopback_host_names() -> None:
    client = TestClient(LoopbackHostsOnly(create_app(MemoryAdapter())))
    for host in ("127.0.0.1:8484", "localhost:8484", "[::1]:8484", "localhost"):
        assert client.get("/api/meta", headers={"host": host}).status_code == 200, host
    for host in ("evil.example:8484", "evil.example", "127.0.0.1.evil.example", "[::2]:80"):
        response = client.get("/api/meta", headers={"host": host})
        assert response.status_code == 421, host
