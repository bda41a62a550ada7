"""Request bodies over the limit (issue #11, item 4): answered 413 in the ASGI layer, from
`Content-Length` before anything is read, or as soon as a chunked body passes the limit;
the rest is never read, and nothing is buffered to disk.

The first tests call the real ASGI application in process; the last ones run it under
uvicorn with TMPDIR pointing to an empty folder and speak raw HTTP/1.1 to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from portal.asgi import application
from tests.conftest import PASSWORD
from tests.livestack import running_web

LIMIT = 2048
MIB = 1024 * 1024


# --- In process: the ASGI application itself ---------------------------------------------


class Exchange:
    """One HTTP request to the ASGI app: what it sent back and how much body it read."""

    def __init__(self, path: str, chunks: list[bytes], headers: dict[str, str]):
        self.path = path
        self.chunks = chunks
        self.headers = headers
        self.reads = 0
        self.messages: list[dict] = []

    async def receive(self) -> dict:
        if self.reads >= len(self.chunks):
            await asyncio.sleep(3600)  # a client that sends nothing more
        self.reads += 1
        more = self.reads < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.reads - 1], "more_body": more}

    async def send(self, message: dict) -> None:
        self.messages.append(message)

    def run(self) -> Exchange:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        asyncio.run(asyncio.wait_for(application(scope, self.receive, self.send), 30))
        return self

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def content_type(self) -> str:
        headers = {name.lower(): value for name, value in self.messages[0]["headers"]}
        return headers[b"content-type"].decode()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def post(path: str, chunks: list[bytes], declare: bool = True, **headers: str) -> Exchange:
    headers.setdefault("content-type", "application/json")
    if declare:
        headers["content-length"] = str(sum(map(len, chunks)))
    return Exchange(path, chunks, headers).run()


@pytest.fixture
def limits(settings):
    settings.MAX_REQUEST_BODY_BYTES = LIMIT
    settings.REQUEST_BODY_LIMITS = {"/api/v1/big": 4 * LIMIT}
    return settings


def assert_json_413(exchange: Exchange) -> None:
    assert exchange.status == 413, exchange.body
    assert exchange.content_type == "application/json"
    error = json.loads(exchange.body)["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "body_too_large",
        "message": error["message"],
        "param": None,
    }
    assert str(LIMIT) in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/predictions", "/v1/chat/completions"])
def test_a_declared_length_over_the_limit_is_413_before_any_read(limits, path):
    exchange = post(path, [b"x" * (LIMIT + 1)])
    assert_json_413(exchange)
    assert exchange.reads == 0


def test_a_declared_length_over_the_limit_on_a_page_is_a_short_text(limits):
    exchange = post("/accounts/login/", [b"x" * (LIMIT + 1)], **{"content-type": "text/plain"})
    assert exchange.status == 413 and exchange.reads == 0
    assert exchange.content_type.startswith("text/plain")
    assert len(exchange.body) < 200


@pytest.mark.parametrize("path", ["/api/v1/predictions", "/v1/chat/completions"])
def test_an_undeclared_body_is_cut_off_at_the_limit(limits, path):
    chunks = [b"x" * 1000] * 10
    exchange = post(path, chunks, declare=False)
    assert_json_413(exchange)
    assert exchange.reads == 3  # 3000 bytes: the first read past 2048; the rest stays unread


def test_a_body_at_the_limit_reaches_the_app(limits):
    exchange = post("/api/v1/predictions", [b"x" * 1000, b"x" * (LIMIT - 1000)], declare=False)
    assert exchange.status == 401  # authentication: the body got through


def test_a_route_in_the_table_has_its_own_limit(limits):
    big = [b"x" * (3 * LIMIT)]
    assert post("/api/v1/big/upload", big).status == 404  # reached the URL resolver
    assert post("/api/v1/big/upload", big, declare=False).status == 404
    assert post("/api/v1/big/upload", [b"x" * (4 * LIMIT + 1)]).status == 413
    assert post("/api/v1/bigger", big).status == 413  # a prefix of whole path segments


def test_a_malformed_content_length_is_400(limits):
    exchange = Exchange("/api/v1/predictions", [b"{}"], {"content-length": "12abc"}).run()
    assert exchange.status == 400 and exchange.reads == 0


# --- Under uvicorn -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, django_db_setup) -> Iterator[tuple[str, int, Path, int]]:
    """(host, port, TMPDIR, pid) of a uvicorn serving the app with an empty temp folder."""
    tmpdir = tmp_path_factory.mktemp("web-tmp")
    with running_web({"TMPDIR": str(tmpdir)}) as (base_url, web):
        url = urlsplit(base_url)
        yield url.hostname, url.port, tmpdir, web.pid


def open_files_under(pid: int, folder: Path) -> list[str]:
    """Files the process holds open in `folder`, named or not (O_TMPFILE, unlinked)."""
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            paths.append(target)
    return paths


def read_status(sock: socket.socket, timeout: float = 30) -> tuple[int, bytes]:
    """The status code and the first response on the socket: its head, and its body up
    to Content-Length (the body may arrive in a later segment than the head)."""
    sock.settimeout(timeout)
    data = b""
    while not _complete(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1)), data


def _complete(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def head(path: str, host: str, port: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/predictions"])
def test_a_300_mib_declared_body_is_refused_unread(server, path):
    host, port, tmpdir, pid = server
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head(path, host, port, Content_Length=str(300 * MIB)) + b"user=a")
        started = time.monotonic()
        status, response = read_status(sock)
        assert status == 413, response
        assert time.monotonic() - started < 20  # not after a read timeout
        assert b"connection: close" in response.lower()
    assert open_files_under(pid, tmpdir) == [] and list(tmpdir.iterdir()) == []


def send_chunks_until_answered(sock: socket.socket, most: int) -> int:
    """Sends 64 KiB chunks (never the final one) until the server answers; the bytes sent."""
    chunk = b"x" * 65536
    sent = 0
    sock.settimeout(10)
    while sent < most:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            break  # the server stopped reading
        sent += len(chunk)
    return sent


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/accounts/login/", "/v1/chat/completions"])
def test_a_chunked_body_over_the_limit_is_413_and_never_spooled(server, path):
    host, port, tmpdir, pid = server
    most = 64 * MIB  # Django would spool this to a temp file above 2.5 MiB
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            head(path, host, port, Transfer_Encoding="chunked", Content_Type="application/json")
        )
        sent = send_chunks_until_answered(sock, most)
        held_open = open_files_under(pid, tmpdir)
        status, response = read_status(sock)
    assert status == 413, response
    assert sent < most
    assert held_open == [] and list(tmpdir.iterdir()) == []
    if path.startswith("/v1/"):
        body = response.split(b"\r\n\r\n", 1)[1]
        assert body.startswith(b'{"error": {"type": "invalid_request_error"'), body


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_normal_posts_still_work(server, owner):
    host, port, tmpdir, _ = server
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        login = client.post(
            "/accounts/login/",
            data={"login": owner.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"http://{host}:{port}/accounts/login/"},
        )
        assert login.status_code == 302, login.text[:500]
        assert "sessionid" in client.cookies
        chunked = client.post(
            "/v1/chat/completions",
            content=iter([b'{"model": "echo", ', b'"messages": []}']),
            headers={"Authorization": "Bearer mp_x_y"},
        )
        assert chunked.status_code == 401  # read whole, parsed, then refused for the token
    assert list(tmpdir.iterdir()) == []
