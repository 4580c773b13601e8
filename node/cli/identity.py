"""``bitcraps-node identity ca-init|issue|show``: the fleet CA and the node's identity.

- ``ca-init DIR`` creates a fleet CA (Ed25519) in DIR: ``ca.key`` (0600) and ``ca.crt``. Run it
  on the machine that will hold the CA (an Ansible controller); it never replaces an existing CA.
- ``issue --ca DIR --pubkey FILE --out FILE`` signs a node certificate for the node public key
  in FILE (the PEM ``identity.pub`` a node writes in its state directory), with the node's peer
  id as a URI subject alternative name. The CA key never leaves DIR.
- ``show [--state-dir D]`` prints the node's peer id and public key (creating the identity if the
  node never ran, as its first start would).

Exit codes: 0 ok, 1 failed (file exists, unreadable, unwritable), 2 bad usage. With ``--json``
stdout carries exactly one JSON document; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from node.cli.output import fail

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    print(json.dumps(document) if args.json else text)


def cmd_ca_init(args: argparse.Namespace) -> int:
    from node.errors import NodeError  # noqa: PLC0415
    from node.security import certs  # noqa: PLC0415 - cryptography only for identity commands

    try:
        ca = certs.init_ca_dir(args.dir, args.name, days=args.days or certs.CA_DAYS)
    except NodeError as exc:  # CertError, or an unsafe directory (paths.DirectoryError)
        return fail(str(exc), EXIT_FAILED)
    except OSError as exc:  # ensure_private_dir and friends raise typed errors; this is belt and braces
        return fail(f"{args.dir}: {exc.strerror}", EXIT_FAILED)
    cert_path, ca_key = args.dir / certs.CA_CERT_FILE, args.dir / certs.CA_KEY_FILE
    _emit(
        args,
        {
            "ca_certificate": str(cert_path),
            "ca_key": str(ca_key),
            "not_after": ca.certificate.not_valid_after_utc.isoformat(),
        },
        f"fleet CA created: certificate {cert_path} (give it to every node), key {ca_key}",
    )
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from node.errors import NodeError  # noqa: PLC0415
    from node.proto import identity  # noqa: PLC0415
    from node.security import certs  # noqa: PLC0415

    try:
        pem = args.pubkey.read_bytes()
    except OSError as exc:
        return fail(f"{args.pubkey}: cannot read ({exc.strerror})", EXIT_FAILED)
    try:
        public_key = identity.public_key_from_pem(pem)
    except ValueError as exc:
        return fail(f"{args.pubkey}: {exc}", EXIT_USAGE)
    try:
        ca = certs.load_ca_dir(args.ca)
        cert = certs.issue(ca, public_key, days=args.days or certs.NODE_CERT_DAYS)
        certs.write_file(args.out, certs.cert_pem(cert), 0o644)
    except NodeError as exc:  # CertError, an unsafe CA directory or ca.key (DirectoryError, KeyFileError)
        return fail(str(exc), EXIT_FAILED)
    peer_id = identity.peer_id_of(public_key)
    _emit(
        args,
        {
            "peer_id": peer_id,
            "certificate": str(args.out),
            "not_after": cert.not_valid_after_utc.isoformat(),
        },
        f"issued {args.out} for peer {peer_id} (valid until {cert.not_valid_after_utc:%Y-%m-%d})",
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from node import paths  # noqa: PLC0415
    from node.errors import NodeError  # noqa: PLC0415
    from node.security import keystore  # noqa: PLC0415

    dirs = paths.resolve_dirs(args.state_dir, None)
    try:
        ident, created = keystore.load_or_create(dirs.state)
    except NodeError as exc:
        return fail(str(exc), EXIT_FAILED)
    pem = ident.public_key_pem().decode("ascii")
    _emit(
        args,
        {
            "peer_id": ident.peer_id,
            "public_key_pem": pem,
            "public_key_path": str(dirs.state / keystore.PUBLIC_KEY_FILE_NAME),
            "key_path": str(dirs.state / keystore.KEY_FILE_NAME),
            "created": created,
        },
        f"peer id: {ident.peer_id}\n{pem}".rstrip("\n"),
    )
    return EXIT_OK


def _days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 36500:
        raise argparse.ArgumentTypeError(f"days must be 1..36500, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ident = subparsers.add_parser("identity", help="the fleet CA, node certificates, the node's identity")
    sub = ident.add_subparsers(dest="identity_command", required=True, metavar="ACTION")

    ca_init = sub.add_parser("ca-init", help="create a fleet CA (Ed25519) in DIR")
    ca_init.add_argument("dir", type=Path, metavar="DIR")
    ca_init.add_argument("--name", default="bitcraps fleet CA", help="the CA's common name")
    ca_init.add_argument("--days", type=_days, help="validity in days (default 3650)")
    ca_init.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ca_init.set_defaults(func=cmd_ca_init)

    issue = sub.add_parser("issue", help="sign a node certificate for a node's public key")
    issue.add_argument("--ca", type=Path, required=True, metavar="DIR", help="the CA directory (ca-init)")
    issue.add_argument(
        "--pubkey", type=Path, required=True, metavar="FILE", help="the node's identity.pub (PEM)"
    )
    issue.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the PEM")
    issue.add_argument("--days", type=_days, help="validity in days (default 825)")
    issue.add_argument("--json", action="store_true", help="one JSON document on stdout")
    issue.set_defaults(func=cmd_issue)

    show = sub.add_parser("show", help="print this node's peer id and public key")
    show.add_argument("--state-dir", type=Path, help="where the identity key lives")
    show.add_argument("--json", action="store_true", help="one JSON document on stdout")
    show.set_defaults(func=cmd_show)
