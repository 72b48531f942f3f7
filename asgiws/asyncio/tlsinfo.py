"""The ASGI TLS extension (``scope["extensions"]["tls"]``) of a connection, read from its SSL
object once the handshake is done.

The fields are those of the ASGI TLS extension, version 0.2: ``server_cert`` (PEM),
``client_cert_chain`` (PEM strings, the client's own certificate first), ``client_cert_name``
(the subject's distinguished name as an RFC 4514 string), ``client_cert_error`` (None: a
certificate that fails verification is refused in the handshake, so an app never sees one),
``tls_version`` (``0x0304`` for TLS 1.3) and ``cipher_suite`` (the IANA number, ``0x1301`` for
TLS_AES_128_GCM_SHA256). The result is plain data the core puts into each request's scope.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["TLSInfo", "rfc4514_name"]

# The protocol names of SSLObject.version() and their numbers on the wire (RFC 8446 §4.2.1).
_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

# RFC 4514 §3: the attribute types written by their short names; Python's ssl names them long.
_SHORT_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
# Types RFC 4514 has no short name for are written as their dotted OID (§2.3).
_OIDS = {
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "pseudonym": "2.5.4.65",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
}
# The IANA cipher suite number is the low 16 bits of OpenSSL's cipher id (0x0300C02F).
_SUITE_MASK = 0xFFFF


def _escape(value: str) -> str:
    """RFC 4514 §2.4: escape the special characters of an attribute value."""
    out = []
    for i, char in enumerate(value):
        if (
            char in '"+,;<>\\'
            or (char == "#" and i == 0)
            or (char == " " and i in (0, len(value) - 1))
        ):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def rfc4514_name(subject: Any) -> str:
    """A subject as ``getpeercert()`` gives it (a tuple of RDNs, each a tuple of (type, value)
    pairs, in certificate order) as an RFC 4514 string: the last RDN first (§2.1), the values of
    a multi-valued RDN joined with '+' (§2.2)."""
    rdns = []
    for rdn in reversed(subject):
        parts = []
        for kind, value in rdn:
            name = _SHORT_NAMES.get(kind) or _OIDS.get(kind) or kind
            parts.append(f"{name}={_escape(str(value))}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _first_certificate(path: str) -> str | None:
    """The first PEM certificate of --ssl-certfile (the server's own), normalised; None if it
    cannot be read again (the extension allows None)."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)]))
    except ValueError:
        return None


class TLSInfo:
    """What every TLS connection of one server shares (its certificate, the suite numbers),
    and :meth:`of` for one connection."""

    __slots__ = ("server_cert", "suites")

    def __init__(self, context: ssl.SSLContext, certfile: str) -> None:
        self.server_cert = _first_certificate(certfile)
        self.suites = {c["name"]: c["id"] & _SUITE_MASK for c in context.get_ciphers()}

    def of(self, ssl_object: Any) -> dict[str, Any]:
        """The extension's fields for the connection of ``ssl_object`` (an ``ssl.SSLObject``)."""
        chain: list[str] = []
        name: str | None = None
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            # Python 3.13 and later return the chain the client sent; before, only its own.
            unverified = getattr(ssl_object, "get_unverified_chain", None)
            ders = unverified() if unverified is not None else None
            if ders:
                chain = [ssl.DER_cert_to_PEM_cert(_der(cert)) for cert in ders]
            else:
                chain = [ssl.DER_cert_to_PEM_cert(leaf)]
            # The parsed form exists only for a verified certificate (--ssl-cert-reqs 1 or 2).
            parsed = ssl_object.getpeercert()
            if parsed:
                name = rfc4514_name(parsed.get("subject", ()))
        cipher = ssl_object.cipher()
        version = ssl_object.version()
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": _VERSIONS.get(version) if version else None,
            "cipher_suite": self.suites.get(cipher[0]) if cipher else None,
        }


def _der(cert: Any) -> bytes:
    """One certificate of get_unverified_chain(): DER bytes, or an object that gives them."""
    if isinstance(cert, bytes):
        return cert
    return bytes(cert.public_bytes(ssl.ENCODING_DER))  # type: ignore[attr-defined]
