"""Our lt's side of upgraded pool connections: what it takes from a registration answer
(and what makes it fall back to raw pool sockets), and that the secret is never shown."""

from __future__ import annotations

import asyncio
import json

import pytest

from tunnelsite_client.pool_upgrade import PoolRefused, pool_endpoint, upgrade_request
from tunnelsite_client.redact import redact
from tunnelsite_client.registration import parse_registration, register

SECRET = "ab" * 32
RELAY = "https://relay.example"


def answer(**extra: object) -> bytes:
    body = {"id": "quiet-fox", "port": 0, "max_conn_count": 10, "url": "https://x"}
    body.update(extra)
    return json.dumps(body).encode()


def test_a_pool_url_and_secret_make_upgraded_pool_connections_even_with_port_0():
    url = "https://relay.example/api/tunnels/quiet-fox/pool"
    reg = parse_registration(RELAY, answer(pool_url=url, pool_secret=SECRET))
    assert (reg.pool_url, reg.pool_secret, reg.port) == (url, SECRET, 0)
    assert SECRET not in repr(reg)
    assert pool_endpoint(url) == ("relay.example", 443, True)
    assert pool_endpoint("http://127.0.0.1:8080/p") == ("127.0.0.1", 8080, False)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("ftp://relay.example/pool", SECRET),
        ("https:///pool", SECRET),
        ("https://relay.example:99999/pool", SECRET),
        ("https://relay.example/pool", "ab" * 31),
        ("https://relay.example/pool", "zz" * 32),
        ("https://relay.example/pool", None),
        (None, SECRET),
    ],
)
def test_an_unsound_pool_url_or_secret_falls_back_to_the_raw_port(url, secret):
    reg = parse_registration(RELAY, answer(port=40000, pool_url=url, pool_secret=secret))
    assert (reg.pool_url, reg.pool_secret, reg.port) == (None, "", 40000)


def test_port_0_without_a_pool_url_is_still_a_bad_answer():
    with pytest.raises(Exception, match="bad port"):
        parse_registration(RELAY, answer(port=0))


def test_the_upgrade_request_names_the_path_host_and_secret():
    head = upgrade_request("https://relay.example:8443/api/tunnels/q/pool", SECRET).decode()
    assert head.startswith("GET /api/tunnels/q/pool HTTP/1.1\r\nHost: relay.example:8443\r\n")
    assert "Upgrade: tunnelsite-pool\r\n" in head and "Connection: Upgrade\r\n" in head
    assert f"Tunnelsite-Pool-Secret: {SECRET}\r\n" in head and head.endswith("\r\n\r\n")


def test_a_refusal_says_whether_the_registration_is_gone():
    assert PoolRefused(401, "m").registration_gone and PoolRefused(404, "m").registration_gone
    assert not PoolRefused(429, "m").registration_gone


def test_the_secret_is_masked_wherever_it_would_be_printed():
    assert SECRET not in redact(f"pool secret {SECRET} refused", {SECRET})


async def _one_registration(answer_body: bytes, **kw: object) -> tuple[bytes, object]:
    """register() against a one-shot HTTP server on loopback: (the request head it got, the
    Registration)."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(answer_body)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + answer_body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reg = await register(f"http://127.0.0.1:{port}", "quiet-fox", None, **kw)  # type: ignore[arg-type]
    return heads[0], reg


def test_registering_again_sends_the_last_pool_secret_and_takes_the_new_one():
    url = "http://127.0.0.1:1/api/tunnels/quiet-fox/pool"
    new = "cd" * 32
    head, reg = asyncio.run(
        _one_registration(
            answer(pool_url=url, pool_secret=new), client_id="client-0001", pool_secret=SECRET
        )
    )
    assert f"Tunnelsite-Pool-Secret: {SECRET}\r\n".encode() in head
    assert b"X-Tunnelsite-Client: client-0001\r\n" in head
    assert (reg.pool_url, reg.pool_secret) == (url, new)  # type: ignore[attr-defined]
    first, _ = asyncio.run(_one_registration(answer(pool_url=url, pool_secret=new)))
    assert b"tunnelsite-pool-secret" not in first.lower()  # a first registration has none
