"""Read credentials: `sightline tokens`, hashed storage, the one-time dashboard link."""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa

from sightline.dashboard import COOKIE, CSRF_HEADER, dashboard_link
from sightline.store.schema import read_tokens
from tests.api.support import bearer, token
from tests.cli.test_cli import invoke, run
from tests.harness import System


def test_create_list_revoke(system: System) -> None:
    out = run(system, "tokens", "create", "--product", system.product.id, "--name", "grafana")
    secret = re.search(r"token \(shown once, keep it secret\): (\S+)", out)
    assert secret is not None
    value = secret.group(1)
    token_id = re.search(r"(tok_[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    # Only the SHA-256 is stored.
    (row,) = system.sql(sa.select(read_tokens))
    assert row.token_hash == hashlib.sha256(value.encode()).hexdigest()
    assert value not in str(tuple(row))
    listed = run(system, "tokens", "list")
    assert token_id in listed and "grafana" in listed and value[:12] in listed
    assert value not in listed
    assert system.client.get("/api/v1/events", headers=bearer(value)).status_code == 200
    assert f"{token_id} revoked" in run(system, "tokens", "revoke", token_id)
    assert system.client.get("/api/v1/events", headers=bearer(value)).status_code == 401
    assert token_id not in run(system, "tokens", "list")
    assert token_id in run(system, "tokens", "list", "--all")


def test_create_needs_a_scope(system: System) -> None:
    assert invoke(system, "tokens", "create").exit_code == 2
    assert invoke(system, "tokens", "create", "--admin", "--product", "x").exit_code == 2
    missing = invoke(system, "tokens", "create", "--product", "prd_nope")
    assert missing.exit_code == 1 and "no product" in missing.output
    assert invoke(system, "tokens", "revoke", "tok_nope").exit_code == 1
    admin = run(system, "tokens", "create", "--admin")
    assert "created admin token" in admin


def _login_code(link: str) -> str:
    return link.split("token=", 1)[1]


def test_login_link_logs_in_once(system: System) -> None:
    link = dashboard_link(system.settings, system.engine)
    assert link.startswith(f"http://127.0.0.1:{system.settings.port}/ui/login?token=")
    client = system.client
    r = client.get("/ui/login", params={"token": _login_code(link)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    # The session reads, and hands the page its CSRF value.
    session = client.get("/api/v1/session")
    assert session.status_code == 200, session.text
    assert session.json()["admin"] is True
    csrf = session.json()["csrf"]
    assert csrf
    # The same link is useless the second time, even from a fresh browser.
    client.cookies.clear()
    again = client.get("/ui/login", params={"token": _login_code(link)}, follow_redirects=False)
    assert again.status_code == 401
    assert client.get("/api/v1/session").status_code == 401
    # The admin token's value never appears in the link, and `up` reuses one token.
    second = dashboard_link(system.settings, system.engine)
    assert second != link
    assert len(system.sql(sa.select(read_tokens))) == 1


def test_session_post_needs_the_csrf_header(system: System) -> None:
    client = system.client
    link = dashboard_link(system.settings, system.engine)
    client.get("/ui/login", params={"token": _login_code(link)}, follow_redirects=False)
    csrf = client.get("/api/v1/session").json()["csrf"]
    assert client.post("/api/v1/deadletters/replay").status_code == 403
    wrong = client.post("/api/v1/deadletters/replay", headers={CSRF_HEADER: "nope"})
    assert wrong.status_code == 403
    ok = client.post("/api/v1/deadletters/replay", headers={CSRF_HEADER: csrf})
    assert ok.status_code == 202, ok.text
    # Logging out ends the session.
    assert client.post("/ui/logout").status_code == 204
    client.cookies.clear()
    assert client.get("/api/v1/session").status_code == 401


def test_revoking_the_token_ends_its_sessions(system: System) -> None:
    client = system.client
    link = dashboard_link(system.settings, system.engine)
    client.get("/ui/login", params={"token": _login_code(link)}, follow_redirects=False)
    assert client.get("/api/v1/events").status_code == 200
    (row,) = system.sql(sa.select(read_tokens.c.id))
    run(system, "tokens", "revoke", row.id)
    assert client.get("/api/v1/events").status_code == 401


def test_bearer_tokens_and_their_scope(system: System) -> None:
    admin = token(system)
    mine = token(system, system.product.id)
    for value, admin_expected in ((admin, True), (mine, False)):
        r = system.client.get("/api/v1/session", headers=bearer(value))
        assert r.status_code == 200 and r.json()["admin"] is admin_expected
        assert r.json()["csrf"] is None
    other = system.create_product("Other")
    r = system.client.get("/api/v1/products", headers=bearer(mine))
    assert [p["id"] for p in r.json()] == [system.product.id]
    r = system.client.get("/api/v1/products", headers=bearer(admin))
    assert {p["id"] for p in r.json()} == {system.product.id, other.id}
    # A read key cannot replay: admin only.
    assert system.client.post("/api/v1/deadletters/replay", headers=bearer(mine)).status_code == 403


def test_tokens_link_prints_a_working_one_time_link(system: System) -> None:
    out = run(system, "tokens", "link", "--port", "8123")
    link = out.split()[0]
    assert link.startswith("http://127.0.0.1:8123/ui/login?token=")
    r = system.client.get("/ui/login", params={"token": _login_code(link)}, follow_redirects=False)
    assert r.status_code == 303


def test_log_in_with_a_read_key_from_the_login_form(system: System) -> None:
    mine = token(system, system.product.id)
    client = system.client
    foreign = client.post(
        "/ui/login",
        data={"token": mine},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403 and COOKIE not in foreign.headers.get("set-cookie", "")
    assert client.post("/ui/login", data={"token": "nope"}).status_code == 401
    r = client.post(
        "/ui/login",
        data={"token": mine},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    session = client.get("/api/v1/session").json()
    assert session["admin"] is False and session["product_id"] == system.product.id
    # The session reads what the key reads, and no more.
    other = system.create_product("Other")
    assert client.get("/api/v1/events", params={"product": other.id}).status_code == 403
