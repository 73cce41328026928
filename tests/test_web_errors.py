"""HTTP errors are pages for browsers and JSON under /api, never raw text; bad numbers and oversized forms get a
clear answer naming the problem and change nothing; a signed-in user's error page does not ask them to sign in."""

from __future__ import annotations

import pytest
from test_web import sign_in, site  # noqa: F401 - the dashboard fixture

from labloop.identity.roles import a_role


def test_api_errors_are_json_including_405(site):  # noqa: F811 - a fixture imported above
    client, *_ = site
    sign_in(client, "operator")
    for method, path, status in (
        ("delete", "/api/campaigns", 405),
        ("get", "/api/nothing/here", 404),
        ("put", "/api/campaigns/web-test/actions/pause", 405),
    ):
        r = client.request(method, path)
        assert r.status_code == status and r.headers["content-type"].startswith("application/json"), r.text
        assert r.json()["ok"] is False and r.json()["error"]["problem"]


def test_browser_errors_are_pages_without_sign_in_for_a_signed_in_user(site):  # noqa: F811 - a fixture imported above
    client, *_ = site
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and 'href="/login"' in r.text
    sign_in(client, "operator")
    for path, status in (("/no/such/page", 404), ("/campaigns/nope", 404), ("/audit", 403)):
        r = client.get(path)
        assert r.status_code == status and "text/html" in r.headers["content-type"]
        assert 'href="/login"' not in r.text and "operator" in r.text  # their own header, no "sign in"
    r = client.delete("/")
    assert r.status_code == 405 and "text/html" in r.headers["content-type"] and "<h1" in r.text


def test_an_oversized_login_form_gets_the_login_page(site):  # noqa: F811 - a fixture imported above
    client, store, *_ = site
    before = len(store.audit_log())
    r = client.post("/login", data={"csrf": "x", "name": "a" * 200_000, "password": "p"})
    assert r.status_code == 413 and "text/html" in r.headers["content-type"] and "sign-in form" in r.text
    assert len(store.audit_log()) == before


def test_out_of_range_event_numbers_and_trials_are_400_naming_the_field(site):  # noqa: F811 - a fixture imported above
    client, store, *_ = site
    sign_in(client, "approver")
    r = client.get("/api/campaigns/web-test/events", params={"after": str(10**30)})
    assert r.status_code == 400 and "after" in r.json()["error"]["problem"]
    html = client.get("/campaigns/web-test").text
    import re

    csrf = re.search(r'"csrf":"([^"]+)"', html).group(1)
    r = client.post(
        "/api/campaigns/web-test/actions/approve", json={"trials": [10**30]}, headers={"x-csrf-token": csrf}
    )
    assert r.status_code == 400 and "trials" in r.json()["error"]["problem"]
    for body, word in (
        (b"[" * 5_000 + b"]" * 5_000, "nested"),
        (b'{"trials": "3"}', "trials"),
        (b'{"trials": [1], "reason": ["x"]}', "reason"),
    ):
        r = client.post(
            "/api/campaigns/web-test/actions/" + ("reject" if b"reason" in body else "approve"),
            content=body,
            headers={"x-csrf-token": csrf, "content-type": "application/json"},
        )
        assert r.status_code in (400, 413) and word in r.json()["error"]["problem"], r.text
    assert store.pending_requests(1) == []


@pytest.mark.parametrize(
    "role, said",
    [("approver", "an approver"), ("admin", "an admin"), ("operator", "an operator"), ("viewer", "a viewer")],
)
def test_roles_take_their_article(role, said):
    assert a_role(role) == said
