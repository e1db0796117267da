"""relay.pool.upgraded.TwistedPipe over Twisted's real TLS layer with the relay's own TLS
context: once the connection is lost, closing or aborting it touches nothing (Twisted's TLS
protocol drops its TLS state right after telling the protocol, and its abortConnection raised
AttributeError inside Daphne when an exchange that failed because the client left discarded
its pool socket afterwards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from relay.pool.upgraded import TwistedPipe
from relay.run.tls import ReloadableTLS


def tls_connection(tmp_path: Path) -> tuple[Any, StringTransport]:
    leaf = trustme.CA().issue_cert("relay.example")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    factory = TLSMemoryBIOFactory(
        ReloadableTLS(str(cert), str(key)), False, Factory.forProtocol(Protocol)
    )
    tls = factory.buildProtocol(None)
    wire = StringTransport()
    tls.makeConnection(wire)
    return tls, wire


def test_abort_and_close_after_the_connection_is_lost_touch_nothing(tmp_path: Path) -> None:
    tls, _ = tls_connection(tmp_path)
    pipe = TwistedPipe(tls, ("127.0.0.1", 4000))
    tls.connectionLost(Failure(ConnectionError("the client went away")))
    pipe.lost()  # what UpgradedPool.connectionLost does
    pipe.abort()  # AttributeError on Twisted's side before TwistedPipe knew the loss
    pipe.close()
    assert pipe.is_closing()


def test_before_the_loss_abort_reaches_the_connection(tmp_path: Path) -> None:
    tls, wire = tls_connection(tmp_path)
    TwistedPipe(tls, ("127.0.0.1", 4000)).abort()
    assert wire.disconnecting
