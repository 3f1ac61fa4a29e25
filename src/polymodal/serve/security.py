"""The server's guards: API key, request size, Host header, response headers, files it may index
or serve. Every rule of the security model in docs/serve.md is enforced in this module.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import stat

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

API_KEY_ENV = "POLYMODAL_API_KEY"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# The web page's policy: its own scripts and styles only, thumbnails as blob: URLs, no framing.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Files and thumbnails: never run anything, whatever a browser thinks the bytes are.
FILE_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


# ----------------------------------------------------------------------------------------------
# API key


def api_key_dependency(expected: str):
    """A FastAPI dependency that accepts `X-API-Key: KEY` or `Authorization: Bearer KEY`.

    Keys are compared as SHA-256 digests with hmac.compare_digest: constant time, and the time
    does not even reveal the key's length."""
    want = hashlib.sha256(expected.encode("utf-8")).digest()
    header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="APIKeyHeader",
                          description="the server's API key (polymodal serve --api-key, or $POLYMODAL_API_KEY)")
    bearer = HTTPBearer(auto_error=False, scheme_name="BearerToken", description="the API key as a bearer token")

    def require_api_key(key: str | None = Security(header),
                        credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        given = key if key else (credentials.credentials if credentials else None)
        if not given:
            raise HTTPException(401, "this server needs an API key: send it in the X-API-Key header "
                                     "or as Authorization: Bearer KEY", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(), want):
            raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return require_api_key


# ----------------------------------------------------------------------------------------------
# Host names


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header without its port: "127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


# ----------------------------------------------------------------------------------------------
# The guard around every request


class RequestTooLarge(HTTPException):
    """Raised from inside the body stream; FastAPI passes HTTPExceptions raised there through."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit:,} bytes; "
                              f"start the server with a larger --max-upload-mb to allow more")


class Guard:
    """ASGI middleware: refuses requests with a foreign Host header (DNS rebinding) or a body over
    `max_body` bytes (by Content-Length at once, else while it streams), and adds security headers
    to every response (a strict Content-Security-Policy on the web page)."""

    def __init__(self, app, *, max_body: int, allowed_hosts: tuple[str, ...] | None):
        self.app, self.max_body = app, max_body
        self.allowed_hosts = None if allowed_hosts is None else {h.strip("[]").lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and "*" not in self.allowed_hosts:
            host = host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                return await _send_json(send, 400, f"host {host!r} is not served here (this server answers to "
                                                   f"{', '.join(sorted(self.allowed_hosts))})")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _send_json(send, 413, RequestTooLarge(self.max_body).detail)

        path = scope.get("path", "")
        page = path == "/" or path.startswith("/static/")
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise RequestTooLarge(self.max_body)
            return message

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY")]
                if page:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                have = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", [])) + [h for h in extra if h[0] not in have]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except RequestTooLarge as exc:
            if started:
                raise
            await _send_json(send, 413, exc.detail)


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------------------------
# Files: what may be indexed, what may be served


def normalise_roots(roots) -> tuple[str, ...]:
    out = []
    for root in roots or ():
        real = os.path.realpath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(real):
            from polymodal.errors import InvalidInputError

            raise InvalidInputError(f"index root {root} is not a folder: give existing folders to --index-root")
        out.append(real)
    return tuple(out)


def check_index_paths(paths: list[str], roots: tuple[str, ...]) -> list[str]:
    """The real paths of `paths` if every one lies inside an index root; else 403 (or 400)."""
    if not roots:
        raise HTTPException(403, "indexing over HTTP is turned off on this server: start it with --index-root DIR "
                                 "(repeatable) to allow indexing the files under DIR, or index from the shell with "
                                 "`polymodal index PATH --collection NAME`")
    out = []
    for path in paths:
        if not path or "\x00" in path or not os.path.isabs(path):
            raise HTTPException(400, f"path {path!r} is not an absolute path: give paths such as "
                                     f"{os.path.join(roots[0], 'photos')}")
        real = os.path.realpath(path)
        if not any(os.path.commonpath([real, root]) == root for root in roots):
            raise HTTPException(403, f"{path} is outside the folders this server may index ({', '.join(roots)}); "
                                     f"restart the server with --index-root DIR for a folder that holds it")
        if not os.path.exists(real):
            raise HTTPException(400, f"no such file or folder: {path}")
        out.append(real)
    return out


class SourceGone(HTTPException):
    def __init__(self, item_id: str, source: str, why: str):
        super().__init__(404, f"the file of item {item_id} ({source}) {why}; re-index its folder "
                              f"(with prune) to bring the collection up to date")


def open_source(record: dict):
    """Open an item's stored source for reading, re-checking that it is still a regular file at
    the very path that was indexed (no symlink put there since: sources are stored resolved).
    Returns (binary file object, os.stat_result); raises SourceGone (404)."""
    path, item_id = record["source"], record["id"]
    if not os.path.isabs(path) or os.path.realpath(path) != path:
        raise SourceGone(item_id, path, "is no longer where it was indexed (a link now stands on its path)")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not hang the request
    except FileNotFoundError:
        raise SourceGone(item_id, path, "is gone from disk") from None
    except OSError as exc:
        raise SourceGone(item_id, path, f"cannot be opened ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceGone(item_id, path, "is no longer a regular file")
    return os.fdopen(fd, "rb"), st
