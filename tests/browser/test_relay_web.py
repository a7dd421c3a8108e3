"""The relay's side of the page, without a browser: headers, Origin check, the
download bridge's names and one-time links."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from xfer.relay import create_app
from xfer.relay.download import content_disposition
from xfer.relay.web import PAGE_FILES, content_security_policy, origin_allowed


@pytest.fixture
def client():
    # TestClient asks for the host "testserver": a name the relay answers to only when told
    with TestClient(create_app(allowed_origins=("https://xfer.example",), allowed_hosts=("testserver",))) as c:
        yield c


def test_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/", headers={"host": "192.168.1.20:8765"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "connect-src 'self' ws://192.168.1.20:8765 wss://192.168.1.20:8765;" in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    body = page.text
    assert '<script type="module" src="app.js">' in body
    assert "style=" not in body and "onclick" not in body  # nothing inline
    for name in PAGE_FILES:
        if name != "index.html":
            r = client.get(f"/{name}")
            assert r.status_code == 200 and r.content, name
            for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert risky not in r.text, (name, risky)
    assert client.get("/healthz").json()["status"] == "ok"


def test_csp_ignores_a_malformed_host():
    assert "evil" not in content_security_policy("x; script-src evil.test")
    assert content_security_policy(None).count("'self'") >= 3


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        (None, "relay:8765", True),  # the CLI and scripts send no Origin
        ("http://relay:8765", "relay:8765", True),
        ("http://RELAY:8765", "relay:8765", True),
        ("https://relay.example", "relay.example", True),
        ("http://relay.example", "relay.example:80", True),
        ("http://evil.test", "relay:8765", False),
        ("http://relay:8766", "relay:8765", False),
        ("http://relay.evil:8765", "relay:8765", False),
        ("null", "relay:8765", False),
        ("https://xfer.example", "127.0.0.1:8765", True),  # --allow-origin
        ("https://xfer.example.evil", "127.0.0.1:8765", False),
        ("http://[::1]:8765", "[::1]:8765", True),
    ],
)
def test_origin_check(origin, host, ok):
    assert origin_allowed(origin, host, ("https://xfer.example",)) is ok


def test_websocket_from_another_site_is_refused(client):
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws", headers={"origin": "http://evil.test"}):
            pass
    assert refused.value.code == 1008
    with client.websocket_connect("/ws", headers={"origin": "https://xfer.example"}) as ws:
        ws.send_text("{}")  # admitted: the relay now waits for a hello
    with client.websocket_connect("/ws", headers={"origin": "http://testserver"}) as ws:
        ws.send_text("{}")


@pytest.mark.parametrize(
    ("name", "fallback", "star"),
    [
        ("report.pdf", "report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd", "passwd"),
        ('a"b;c%d.txt', "a_b_c_d.txt", "a_b%3Bc%25d.txt"),
        ("résumé ✓.txt", "r_sum_ _.txt", "r%C3%A9sum%C3%A9%20%E2%9C%93.txt"),
        ("evil\r\nX-Header: 1\u202e.txt", "evilX-Header_ 1.txt", "evilX-Header_%201.txt"),
    ],
)
def test_download_names_are_sanitised(name, fallback, star):
    value = content_disposition(name)
    assert value == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{star}"
    assert "\r" not in value and "\n" not in value


def test_the_service_worker_is_served_and_its_links_never_take_the_page_away(client):
    """sw.js answers save/ID itself; a request that reaches the relay (no worker) gets 204, which
    leaves the page where it is, and nothing of any file."""
    r = client.get("/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert 'self.addEventListener("fetch"' in r.text
    saved = client.get("/save/" + "0" * 32)
    assert saved.status_code == 204 and saved.content == b"" and saved.headers["cache-control"] == "no-store"


def test_download_links_are_secret_and_one_time(client):
    assert client.get("/download/" + "0" * 32 + "/0").status_code == 404
    assert client.get("/download/not-a-token/0").status_code == 404


def test_constants_module_is_made_from_the_protocol_and_the_limits(client):
    """The page's numbers come from xfer.protocol and Limits, served as one module."""
    from xfer.protocol import HEADER_SIZE, LIMITS, PROTOCOL_VERSION
    from xfer.protocol.closes import Close
    from xfer.relay.web import page_constants

    r = client.get("/constants.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    text = r.text
    document = json.loads(text[text.index("Object.freeze(") + len("Object.freeze(") : text.rindex(");")])
    assert document == page_constants(LIMITS)
    assert document["protocol_version"] == PROTOCOL_VERSION and document["header_size"] == HEADER_SIZE
    assert document["chunk_size"] == LIMITS.chunk_size and document["window"] == LIMITS.window
    assert document["close_codes"]["room_not_found"] == Close.ROOM_NOT_FOUND
    assert document["link_secret_chars"] == 43 and document["builtin_relay"] is False


def test_page_scripts_keep_no_copies_of_the_protocols_numbers(client):
    protocol_js = client.get("/protocol.js").text
    assert 'from "./constants.js"' in protocol_js
    for copy in ("256 * 1024", "8 * 1024 * 1024", '"1.0"', '"2.0"', "999999", "999_999"):
        assert copy not in protocol_js, copy
    connection_js = client.get("/connection.js").text
    assert "4004" not in connection_js and "4010" not in connection_js


def test_the_relay_inside_xfer_send_tells_the_page_so():
    """``RelayServer(builtin=True)`` (the relay ``xfer send``/``xfer receive`` run themselves):
    the page then does not warn that the relay can read what it downloads."""
    from xfer.relay import RelayServer, bind_socket

    def flag(server: RelayServer) -> bool:
        with TestClient(server.app, base_url="http://127.0.0.1") as c:
            text = c.get("/constants.js").text
        return json.loads(text[text.index("Object.freeze(") + len("Object.freeze(") : text.rindex(");")])[
            "builtin_relay"
        ]

    for builtin in (True, False):
        server = RelayServer(bind_socket("127.0.0.1", 0), builtin=builtin)
        try:
            assert flag(server) is builtin
        finally:
            server.sock.close()


def test_the_page_marks_its_browser_once(client):
    """Serving the page sets the cookie that download links are bound to (``browser_of``):
    HttpOnly, same-site, kept while the browser has one (another tab's links still work)."""
    first = client.get("/").headers["set-cookie"]
    assert first.startswith("xfer-browser=") and "HttpOnly" in first and "SameSite=lax" in first and "Path=/" in first
    assert "set-cookie" not in client.get("/").headers  # the client sends it back: kept
    assert "set-cookie" not in client.get("/app.js").headers


def test_a_share_target_post_that_reaches_the_relay_is_not_read(client):
    """The installed page's share target is the page's worker's (share-sw.js); a POST that gets
    to the relay found no worker: the page is told, and the photo is not taken in."""
    r = client.post("/share", files={"files": ("photo.jpg", b"\xff\xd8 a photo")}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "./?share=failed"
    assert r.content == b""
    manifest = client.get("/manifest.webmanifest")
    assert manifest.headers["content-type"] == "application/manifest+json"
    assert "manifest-src 'self'" in client.get("/").headers["content-security-policy"]
