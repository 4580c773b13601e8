"""A hand-driven TCP-TLS client: completes TLS 1.3 and writes whatever frames a test chooses.

It speaks the link protocol only as far as an attacker must (read HELLO, build a PROOF that is
valid or not) and leaves every other choice to the test: which frames, and where the writes cut.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
from dataclasses import dataclass

from node.proto.identity import Identity
from node.proto.link.frames import HEADER, FrameKind, encode
from node.proto.link.stream_link import NONCE_SIZE, PROTOCOL_VERSION
from node.security.trust import TrustPolicy

_HELLO = struct.Struct(f"!B{NONCE_SIZE}s")


def client_context() -> ssl.SSLContext:
    """TLS 1.3 without checking the server's self-signed certificate (as any stranger can)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


@dataclass
class RawTlsClient:
    sock: ssl.SSLSocket
    server_nonce: bytes
    server_cert_der: bytes

    @classmethod
    def connect(cls, port: int, timeout: float = 10.0) -> RawTlsClient:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock = client_context().wrap_socket(raw)
        header = _read_exactly(sock, HEADER.size)
        length, kind, _, _ = HEADER.unpack(header)
        assert kind == FrameKind.HELLO, kind
        version, nonce = _HELLO.unpack(_read_exactly(sock, length))
        assert version == PROTOCOL_VERSION
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return cls(sock, nonce, der)

    def proof(self, identity: Identity, valid: bool = True) -> bytes:
        """A PROOF frame; an invalid one is signed over another session's certificate."""
        client_nonce = os.urandom(NONCE_SIZE)
        cert = self.server_cert_der if valid else self.server_cert_der[::-1]
        signature = TrustPolicy.make_proof(identity, cert, self.server_nonce, client_nonce)
        return encode(FrameKind.PROOF, client_nonce + identity.public_key + signature)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def drain(self, timeout: float = 10.0) -> bytes:
        """Everything the node sends until it closes the connection (or ``timeout``)."""
        self.sock.settimeout(timeout)
        out = b""
        try:
            while chunk := self.sock.recv(65536):
                out += chunk
        except (TimeoutError, OSError):
            pass
        return out

    def close(self) -> None:
        self.sock.close()


def frame_kinds(data: bytes) -> list[tuple[FrameKind, bytes]]:
    """The (kind, payload) of each whole frame in ``data``."""
    out: list[tuple[FrameKind, bytes]] = []
    while len(data) >= HEADER.size:
        length, kind, _, _ = HEADER.unpack_from(data)
        out.append((FrameKind(kind), data[HEADER.size : HEADER.size + length]))
        data = data[HEADER.size + length :]
    return out


def _read_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the node")
        out += chunk
    return out
