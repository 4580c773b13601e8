"""node.errors.ReasonError: one shape for every typed error (an enum ``reason``, a ``detail``),
with the LocalError / RemoteError split intact and every message as users already read it."""

from __future__ import annotations

import enum
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netlink.lab.errors import (
    CoturnError,
    CoturnFailure,
    LabError,
    LabStateError,
    NamespaceError,
    NamespaceOp,
    NftError,
    NftFailure,
    StateFailure,
)
from node.config import ConfigError, ConfigProblem
from node.errors import LocalError, NodeError, PathError, ReasonError, RemoteError, SettingsError
from node.paths import DirectoryError, DirProblem
from node.proto.link.frames import FrameError, FrameErrorReason
from node.proto.session.errors import (
    DropReason,
    HandshakeError,
    HandshakeFailure,
    SessionDecodeError,
    SessionNotReady,
    StateProblem,
)
from node.proto.session.trust import PeerVerificationError, VerifyFailure
from node.proto.stun.errors import DecodeReason, StunDecodeError
from node.proto.stun.saslprep import PrepError, PrepFailure
from node.proto.turn.errors import TurnAuthError, TurnError, TurnFailure
from node.proto.vocabulary import TransportReason
from node.security.certs import CertError, CertProblem
from node.security.keyfile import KeyFileError, KeyFileProblem
from node.security.keystore import IdentityError, IdentityProblem
from node.security.trust import TrustError, TrustReason
from node.services.control import ErrorCode, RequestError
from node.transports.base import TransportError, TransportPeerError, TransportUsageError
from node.transports.tcp_tls.link import TlsPeerError


class Why(enum.Enum):
    SHORT = "too short"
    LATE = "too late"


class PeerSentJunk(ReasonError[Why], RemoteError):
    pass


class WeMisused(ReasonError[Why], LocalError):
    pass


class Worded(ReasonError[Why], LocalError):
    def __init__(self, reason: Why, detail: str, *, where: str) -> None:
        self.where = where  # set before super().__init__: describe() reads it
        super().__init__(reason, detail)

    def describe(self) -> str:
        return f"at {self.where}, {self.reason.value} ({self.detail})"


def test_reason_and_detail_are_kept_and_make_the_message() -> None:
    exc = PeerSentJunk(Why.SHORT, "3 bytes")
    assert exc.reason is Why.SHORT
    assert exc.detail == "3 bytes"
    assert str(exc) == "too short: 3 bytes"
    assert exc.args == ("too short: 3 bytes",)


def test_no_detail_means_no_dangling_colon() -> None:
    exc = PeerSentJunk(Why.LATE)
    assert exc.detail == ""
    assert str(exc) == "too late"


def test_a_subclass_keeps_its_wording_through_describe() -> None:
    exc = Worded(Why.LATE, "2 s", where="the gate")
    assert str(exc) == "at the gate, too late (2 s)"
    assert exc.reason is Why.LATE


def test_path_error_leads_with_the_path() -> None:
    exc: PathError[Why] = PathError(Path("/var/lib/x"), Why.SHORT, "3 bytes, a key is 119")
    assert str(exc) == "/var/lib/x: 3 bytes, a key is 119"
    assert exc.path == Path("/var/lib/x")
    assert exc.reason is Why.SHORT
    assert isinstance(exc, LocalError)


def test_the_local_remote_split_is_what_except_sees() -> None:
    with pytest.raises(RemoteError) as remote:
        try:
            raise PeerSentJunk(Why.SHORT, "x")
        except LocalError:  # pragma: no cover - must not match
            pytest.fail("a remote reason error was caught as local")
    assert isinstance(remote.value, NodeError)
    with pytest.raises(LocalError):
        try:
            raise WeMisused(Why.SHORT, "x")
        except RemoteError:  # pragma: no cover - must not match
            pytest.fail("a local reason error was caught as remote")
    # One handler for every typed error, deciding on the reason, never on the text.
    for exc in (PeerSentJunk(Why.SHORT, "a"), WeMisused(Why.SHORT, "b")):
        try:
            raise exc
        except ReasonError as caught:
            assert caught.reason is Why.SHORT


P = Path("/p")

# Every error class of the node (and the lab) that pairs itself with a reason enum, built as its
# callers build it, with the side it is on and the name its callers read the reason by.
PLACES: list[tuple[ReasonError[Any], type[NodeError], str, enum.Enum]] = [
    (SessionDecodeError(DropReason.REPLAYED), RemoteError, "reason", DropReason.REPLAYED),
    (HandshakeError(HandshakeFailure.TIMEOUT), RemoteError, "reason", HandshakeFailure.TIMEOUT),
    (SessionNotReady(StateProblem.CLOSED), LocalError, "problem", StateProblem.CLOSED),
    (PeerVerificationError(VerifyFailure.WRONG_PEER, "x"), RemoteError, "reason", VerifyFailure.WRONG_PEER),
    (TurnAuthError("401 again", code=401), RemoteError, "reason", TurnFailure.AUTH),
    (TurnError("no XOR-RELAYED-ADDRESS"), RemoteError, "reason", TurnFailure.PROTOCOL),
    (StunDecodeError(DecodeReason.BAD_MAGIC), RemoteError, "reason", DecodeReason.BAD_MAGIC),
    (FrameError(FrameErrorReason.TOO_LARGE, "DATA"), RemoteError, "reason", FrameErrorReason.TOO_LARGE),
    (PrepError(PrepFailure.PROHIBITED, "\x07"), LocalError, "reason", PrepFailure.PROHIBITED),
    (
        ConfigError("a.b", ConfigProblem.OUT_OF_RANGE, "x"),
        SettingsError,
        "problem",
        ConfigProblem.OUT_OF_RANGE,
    ),
    (CertError(P, CertProblem.NOT_PEM, "x"), LocalError, "problem", CertProblem.NOT_PEM),
    (TrustError(TrustReason.EXPIRED, "x"), RemoteError, "reason", TrustReason.EXPIRED),
    (KeyFileError(P, KeyFileProblem.SYMLINK, "x"), LocalError, "problem", KeyFileProblem.SYMLINK),
    (IdentityError(P, IdentityProblem.NOT_PEM, "x"), LocalError, "problem", IdentityProblem.NOT_PEM),
    (DirectoryError(P, DirProblem.FOREIGN_OWNER, "x"), LocalError, "problem", DirProblem.FOREIGN_OWNER),
    (RequestError(ErrorCode.TIMEOUT, "x"), RemoteError, "code", ErrorCode.TIMEOUT),
    (TransportUsageError(TransportReason.CLOSED, "x"), LocalError, "reason", TransportReason.CLOSED),
    (TransportPeerError(TransportReason.REFUSED, "x"), RemoteError, "reason", TransportReason.REFUSED),
    (TlsPeerError(TransportReason.AUTH_FAILED, "x"), RemoteError, "reason", TransportReason.AUTH_FAILED),
    (NamespaceError(NamespaceOp.CREATE, "ns", 1), LocalError, "op", NamespaceOp.CREATE),
    (NftError("r", None, "", NftFailure.TIMEOUT), LocalError, "failure", NftFailure.TIMEOUT),
    (CoturnError(CoturnFailure.NOT_READY, "x"), LocalError, "failure", CoturnFailure.NOT_READY),
    (LabStateError(StateFailure.MISSING, "/p"), LocalError, "failure", StateFailure.MISSING),
]


@pytest.mark.parametrize(("exc", "side", "name", "reason"), PLACES, ids=lambda v: type(v).__name__)
def test_every_typed_error_is_one_reason_error(
    exc: ReasonError[Any], side: type[NodeError], name: str, reason: enum.Enum
) -> None:
    assert isinstance(exc, ReasonError)
    assert isinstance(exc, side)
    assert exc.reason is reason
    assert getattr(exc, name) is reason  # the name its callers read still works
    other = RemoteError if issubclass(side, LocalError) else LocalError
    assert not isinstance(exc, other)


def test_transport_errors_share_one_root_and_split_by_side() -> None:
    assert issubclass(TransportUsageError, TransportError) and issubclass(TransportUsageError, LocalError)
    assert issubclass(TransportPeerError, TransportError) and issubclass(TransportPeerError, RemoteError)
    assert issubclass(TlsPeerError, TransportPeerError)


def test_lab_errors_stay_lab_errors() -> None:
    for cls in (NamespaceError, NftError, CoturnError, LabStateError):
        assert issubclass(cls, LabError)


def test_the_base_layer_loads_no_io() -> None:
    # node.errors is the bottom layer: importing it must not pull in sockets or asyncio.
    code = "import sys, node.errors; print(sorted({'socket', 'asyncio', 'ssl'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The places whose wording differs from "<reason>: <detail>" keep it (CLI lines, logs, status).
WORDING = [
    (ConfigError("", ConfigProblem.SYNTAX, "bad TOML at line 3"), "bad TOML at line 3"),
    (ConfigError("tcp.port", ConfigProblem.OUT_OF_RANGE, "70000 > 65535"), "tcp.port: 70000 > 65535"),
    (
        KeyFileError(Path("/s/identity.key"), KeyFileProblem.SYMLINK, "a symlink"),
        "/s/identity.key: a symlink",
    ),
    (PrepError(PrepFailure.EMPTY), "empty string"),
    (PrepError(PrepFailure.PROHIBITED, "\x07"), "prohibited character (U+0007)"),
    (TurnAuthError("401 after credentials"), "authentication failed: 401 after credentials"),
    (RequestError(ErrorCode.UNKNOWN_COMMAND, "no command 'x'"), "unknown_command: no command 'x'"),
    (NamespaceError(NamespaceOp.CREATE, "r1", 1), "netns create 'r1' failed (errno 1)"),
    (NftError("r1", 1, "Error: syntax\n"), "nft in 'r1' exited 1: Error: syntax"),
    (NftError("r1", None, "", NftFailure.TIMEOUT), "nft in 'r1' timeout"),
    (CoturnError(CoturnFailure.EXITED, "exit 1"), "coturn exited: exit 1"),
    (LabStateError(StateFailure.IO, "/run/lab", 5, "EIO"), "lab file /run/lab: io-error (EIO)"),
]


@pytest.mark.parametrize(("exc", "text"), WORDING, ids=lambda v: type(v).__name__)
def test_each_place_keeps_the_wording_users_read(exc: ReasonError[Any], text: str) -> None:
    assert str(exc) == text
