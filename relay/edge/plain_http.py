"""A plain HTTP request's start: Daphne's `WebRequest.process`, without its Deferreds.

Daphne's `process` is an `inlineCallbacks` generator that wraps a synchronous call
(`create_application`) in `maybeDeferred` and yields it: a generator, two Deferreds and
their callbacks per request, for nothing, since the relay's `create_application` returns at
once. `start` does the same checks in the same order with the same answers (header names
and values, an ASCII path and query, Daphne's headers without `_`, its `daphne-root-path`,
a forwarded address when a proxy header is configured) and calls the application directly.
A request that upgrades (a WebSocket) still goes through Daphne's own `process`.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from typing import Any
from urllib.parse import unquote

from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES, parse_x_forwarded_for

logger = logging.getLogger(__name__)

# Daphne's check of a header value (`INVALID_HEADER_VALUE_BYTES.intersection(value)`, a set
# built per value) as one compiled search for the same bytes.
_INVALID_VALUE = re.compile(b"[" + re.escape(bytes(sorted(INVALID_HEADER_VALUE_BYTES))) + b"]")


def start(request: Any) -> None:
    """Check `request` (a relay/edge/server.py RelayWebRequest whose head and body are read)
    as Daphne does, then start its application; an error is Daphne's answer (400 or 500)."""
    try:
        _start(request)
    except Exception:  # as Daphne: a page, never a connection left without an answer
        logger.error(traceback.format_exc())
        request.basic_error(500, b"Internal Server Error", "Daphne HTTP processing error")


def _start(request: Any) -> None:
    request.request_start = time.time()
    headers: list[tuple[bytes, bytes]] = []
    root_path = request.server.root_path
    for name, values in request.requestHeaders.getAllRawHeaders():
        if not HEADER_NAME_RE.fullmatch(name):
            request.basic_error(400, b"Bad Request", "Invalid header name")
            return
        for value in values:
            if _INVALID_VALUE.search(value):
                request.basic_error(400, b"Bad Request", "Invalid header value")
                return
        if b"_" in name:  # Daphne drops these (CVE-2015-0219)
            continue
        lower = name.lower()
        for value in values:
            if lower == b"daphne-root-path":
                root_path = unquote(value.decode("ascii"))
            else:
                headers.append((lower, value))
    client, host = request.client, request.host  # cached per connection by the channel
    if hasattr(client, "host") and hasattr(client, "port"):
        request.client_addr = [str(client.host), client.port]
        request.server_addr = [str(host.host), host.port]
    scheme = "https" if request.isSecure() else "http"
    server = request.server
    if server.proxy_forwarded_address_header:
        request.client_addr, scheme = parse_x_forwarded_for(
            request.requestHeaders,
            server.proxy_forwarded_address_header,
            server.proxy_forwarded_port_header,
            server.proxy_forwarded_proto_header,
            request.client_addr,
            scheme,
        )
    request.client_scheme = scheme
    try:
        path = request.path.decode("ascii")
    except UnicodeDecodeError:
        request.path = b"/"
        request.basic_error(400, b"Bad Request", "Invalid characters in path")
        return
    query_string = b""
    if b"?" in request.uri:
        query_string = request.uri.split(b"?", 1)[1]
        try:
            query_string.decode("ascii")
        except UnicodeDecodeError:
            request.basic_error(400, b"Bad Request", "Invalid query string")
            return
    request.query_string = query_string
    request.clean_headers = headers
    request.root_path = root_path
    request.application_queue = server.create_application(
        request,
        {
            "type": "http",
            "http_version": request.clientproto.split(b"/")[-1].decode("ascii"),
            "method": request.method.decode("ascii"),
            "path": unquote(path),
            "raw_path": request.path,
            "root_path": root_path,
            "scheme": scheme,
            "query_string": query_string,
            "headers": headers,
            "client": request.client_addr,
            "server": request.server_addr,
        },
    )
    # The relay's application reads the body lazily from the spool (relay/edge/server.py's
    # StreamingReceive): Daphne's copying of it into the queue has nothing to do.
