"""coturn (``turnserver``) in the lab's server namespace, started and stopped by pid.

Always started with ``-L``/``-E`` (without them it listens and relays on every address, loopback
included) and with its pid file, log and user database in the lab's own directory. Listeners:
UDP and TCP on 3478 (and the RFC 5780 alternate port 3479 on the second address), TLS on 5349
with a self-signed certificate made here. Readiness is a real STUN answer (decoded with the node's
own codec, ``node.proto.stun``), not a sleep.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from netlink.lab.errors import CoturnError, CoturnFailure
from netlink.lab.netns import NamespaceThread

TURNSERVER = "turnserver"
STUN_PORT = 3478  # RFC 8489 section 6
STUN_ALT_PORT = 3479  # coturn's RFC 5780 alternate port
TLS_PORT = 5349  # RFC 8489 section 6
RELAY_PORTS = (49152, 49999)
REALM = "lab.bitcraps.test"
READY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CoturnConfig:
    """What the lab's coturn serves and with which credentials."""

    primary: ipaddress.IPv4Address
    secondary: ipaddress.IPv4Address
    username: str
    password: str
    realm: str = REALM
    port: int = STUN_PORT
    alt_port: int = STUN_ALT_PORT
    tls_port: int = TLS_PORT
    # Short lifetimes make refreshes happen within a test (coturn's defaults: 3600/300/600 s).
    max_allocate_lifetime: int | None = None
    permission_lifetime: int | None = None
    channel_lifetime: int | None = None
    stale_nonce: int | None = None  # seconds a nonce lives (coturn default 600 with the flag)
    user_quota: int | None = None  # allocations per user (-q): the 486 case
    total_quota: int | None = None  # allocations in total (-Q)
    auth_secret: str | None = None  # TURN REST API shared secret (--static-auth-secret)

    def options(self) -> list[str]:
        """The optional turnserver flags this config asks for."""
        flags: list[str] = []
        for flag, value in (
            ("--max-allocate-lifetime", self.max_allocate_lifetime),
            ("--permission-lifetime", self.permission_lifetime),
            ("--channel-lifetime", self.channel_lifetime),
            ("--user-quota", self.user_quota),
            ("--total-quota", self.total_quota),
        ):
            if value is not None:
                flags.append(f"{flag}={value}")  # coturn takes these only as --flag=value
        if self.stale_nonce is not None:
            flags.append(f"--stale-nonce={self.stale_nonce}")
        if self.auth_secret is not None:
            flags += ["--use-auth-secret", f"--static-auth-secret={self.auth_secret}"]
        return flags


def new_config(primary: ipaddress.IPv4Address, secondary: ipaddress.IPv4Address) -> CoturnConfig:
    return CoturnConfig(primary, secondary, "lab", secrets.token_hex(8))


def write_certificate(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A fresh self-signed P-256 certificate and key as PEM files in ``directory``."""
    # Imported here: ``lab status``/``lab down`` never make certificates.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(common_name))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "turn-cert.pem"
    key_path = directory / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def command(config: CoturnConfig, workdir: Path, cert: Path, key: Path) -> list[str]:
    return [
        shutil.which(TURNSERVER) or TURNSERVER,
        "-n",
        "--no-cli",
        "--no-dtls",
        "-L",
        str(config.primary),
        "-L",
        str(config.secondary),
        "-E",
        str(config.primary),
        "--listening-port",
        str(config.port),
        "--alt-listening-port",
        str(config.alt_port),
        "--tls-listening-port",
        str(config.tls_port),
        "--cert",
        str(cert),
        "--pkey",
        str(key),
        "--lt-cred-mech",
        "-u",
        f"{config.username}:{config.password}",
        "-r",
        config.realm,
        "--pidfile",
        str(workdir / "turn.pid"),
        "--log-file",
        str(workdir / "turn.log"),
        "--simple-log",
        "--no-stdout-log",
        "--userdb",
        str(workdir / "turndb"),
        "--min-port",
        str(RELAY_PORTS[0]),
        "--max-port",
        str(RELAY_PORTS[1]),
        "-f",
        *config.options(),
    ]


def start(
    runner: NamespaceThread, netns: str, config: CoturnConfig, workdir: Path
) -> subprocess.Popen[bytes]:
    """Start turnserver inside ``netns`` (spawned by the namespace worker, so it inherits it).

    It runs in its own session, so it outlives a CLI that started it and a terminal's ^C. A
    restart in the same ``workdir`` keeps the certificate, so TLS clients still trust it.
    """
    cert, key = workdir / "turn-cert.pem", workdir / "turn-key.pem"
    if not (cert.exists() and key.exists()):
        cert, key = write_certificate(workdir, str(config.primary))
    argv = command(config, workdir, cert, key)
    return runner.run(
        netns,
        lambda: subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        ),
    )


def wait_ready(
    runner: NamespaceThread,
    netns: str,
    *,
    config: CoturnConfig,
    proc: subprocess.Popen[bytes],
    workdir: Path,
    timeout: float = READY_TIMEOUT_S,
) -> float:
    """Block until coturn answers a STUN Binding on UDP and accepts TCP and TLS connections.

    Returns the seconds waited. Raises CoturnError if it exits or stays silent.
    """
    # The codec costs ~50 ms to import: only bring-up needs it (not `lab status` or `lab down`).
    from node.proto import stun  # noqa: PLC0415

    t0 = time.monotonic()
    deadline = t0 + timeout
    tid = stun.new_transaction_id()
    request = stun.encode(stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid))
    sock = runner.socket(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(0.01)
        while True:
            if proc.poll() is not None:
                raise CoturnError(CoturnFailure.EXITED, f"exit {proc.returncode}; {_log_tail(workdir)}")
            if time.monotonic() > deadline:
                raise CoturnError(CoturnFailure.NOT_READY, f"no STUN answer; {_log_tail(workdir)}")
            try:
                sock.sendto(request, (str(config.primary), config.port))
                data = sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            try:
                answer = stun.decode(data)
            except stun.StunDecodeError:
                continue
            if (
                answer.transaction_id == tid
                and answer.method is stun.Method.BINDING
                and answer.message_class is stun.MessageClass.SUCCESS
            ):
                break
    finally:
        sock.close()
    for port in (config.port, config.tls_port):
        _wait_tcp(
            runner,
            netns,
            host=str(config.primary),
            port=port,
            proc=proc,
            workdir=workdir,
            deadline=deadline,
        )
    return time.monotonic() - t0


def _wait_tcp(
    runner: NamespaceThread,
    netns: str,
    *,
    host: str,
    port: int,
    proc: subprocess.Popen[bytes],
    workdir: Path,
    deadline: float,
) -> None:
    while True:
        sock = runner.socket(netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(0.2)
            sock.connect((host, port))
            return
        except OSError:
            if proc.poll() is not None:
                raise CoturnError(CoturnFailure.EXITED, _log_tail(workdir)) from None
            if time.monotonic() > deadline:
                raise CoturnError(CoturnFailure.NOT_READY, f"tcp {port}") from None
            time.sleep(0.005)
        finally:
            sock.close()


def _log_tail(workdir: Path) -> str:
    try:
        return (workdir / "turn.log").read_text(errors="replace")[-400:]
    except OSError:
        return "no log"
