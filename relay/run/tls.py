"""runrelay's own TLS: a server context that SIGHUP can replace without dropping anyone.

`ReloadableTLS` is what Twisted's `SSL4ServerEndpoint` takes as its context factory: Twisted
asks it for `getContext()` once per new connection, so after `reload()` new connections get
the new certificate while live ones (visitors' keep-alive connections, WebSockets, our lt's
registration and pool connections) keep the context they were made with.

The certificate file is a PEM chain, leaf first (certbot's fullchain.pem); the key file its
private key (certbot's privkey.pem). The context allows TLS 1.2 and 1.3 only, offers ALPN
`http/1.1` only (the relay speaks HTTP/1.1), and uses Twisted's cipher and curve choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

ALPN_HTTP1 = b"http/1.1"
# Twisted's choice (twisted.internet._sslverify.defaultCiphers) for TLS 1.2: forward secrecy
# first, AEAD before CBC, no NULL/MD5/DSS. TLS 1.3's suites are OpenSSL's defaults.
TLS12_CIPHERS = (
    b"ECDH+AESGCM:ECDH+CHACHA20:DH+AESGCM:DH+CHACHA20:ECDH+AES256:DH+AES256:"
    b"ECDH+AES128:DH+AES:RSA+AESGCM:RSA+AES:!aNULL:!MD5:!DSS"
)
# No TLS compression (CRIME), the server's cipher order, fresh ECDH keys; no session tickets,
# as Twisted: a ticket key would live as long as the process and undo forward secrecy.
_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_SINGLE_ECDH_USE
    | SSL.OP_SINGLE_DH_USE
    | SSL.OP_NO_TICKET
)


def _choose_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """http/1.1 if the client offers it; otherwise no ALPN at all (a client that offers
    only h2 then speaks HTTP/1.1 or gives up, as with a server that knows no ALPN)."""
    return ALPN_HTTP1 if ALPN_HTTP1 in offered else SSL.NO_OVERLAPPING_PROTOCOLS


class TLSFilesError(Exception):
    """The certificate or key cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class Loaded:
    context: SSL.Context
    subject: str  # the leaf's subject, e.g. "CN=example.com"
    names: tuple[str, ...]  # its DNS names (subjectAltName)
    not_after: datetime  # UTC

    def describe(self) -> str:
        names = ", ".join(self.names) or "no DNS names"
        return f"{self.subject} ({names}), valid until {self.not_after:%Y-%m-%d %H:%M} UTC"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSFilesError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def _private_key(data: bytes, path: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: a relay starts unattended, it cannot ask for a passphrase
        raise TLSFilesError(
            f"the TLS key {path} is encrypted: give runrelay an unencrypted key file "
            "(readable only by the relay's user)"
        ) from None
    except ValueError:
        raise TLSFilesError(f"the TLS key {path} is not a PEM private key") from None


def load(cert_path: str, key_path: str) -> Loaded:
    """A server context for this certificate chain and key, or TLSFilesError."""
    try:
        chain = x509.load_pem_x509_certificates(_read(cert_path, "certificate"))
    except ValueError:
        raise TLSFilesError(
            f"the TLS certificate {cert_path} holds no PEM certificate "
            "(give the full chain, e.g. certbot's fullchain.pem)"
        ) from None
    key = _private_key(_read(key_path, "key"), key_path)
    leaf = chain[0]
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise TLSFilesError(
            f"the TLS key {key_path} does not belong to the certificate {cert_path} "
            "(the first certificate in that file must be the one issued for this key)"
        )
    try:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(_OPTIONS)
        context.set_cipher_list(TLS12_CIPHERS)
        context.use_certificate(leaf)
        for cert in chain[1:]:
            context.add_extra_chain_cert(cert)
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
        context.set_alpn_select_callback(_choose_alpn)
    except (SSL.Error, ValueError, TypeError) as exc:
        raise TLSFilesError(f"cannot use the TLS certificate {cert_path}: {exc}") from None
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = tuple(names.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    return Loaded(context, leaf.subject.rfc4514_string(), dns, leaf.not_valid_after_utc)


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """The relay's server TLS context; `reload()` swaps it for new connections only."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.loaded = load(cert_path, key_path)  # TLSFilesError at start: runrelay says it

    def getContext(self) -> SSL.Context:  # noqa: N802 (Twisted's name)
        return self.loaded.context

    def reload(self) -> Loaded:
        """Read both files again; on TLSFilesError the current context stays in use."""
        self.loaded = load(self.cert_path, self.key_path)
        return self.loaded
