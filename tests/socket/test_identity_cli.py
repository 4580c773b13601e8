"""``bitcraps-node identity``: the CA on a controller, certificates for nodes' public keys."""

import json
import stat
from pathlib import Path

from cryptography import x509

from node.security import certs
from tests.support.nodeproc import cli


def test_ca_init_issue_show_round_trip(tmp_path: Path) -> None:
    ca_dir, state = tmp_path / "ca", tmp_path / "state"
    made = cli("identity", "ca-init", str(ca_dir), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["ca_certificate"] == str(ca_dir / "ca.crt")

    shown = cli("identity", "show", "--state-dir", str(state), "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["created"] is True
    assert len(info["peer_id"]) == 52
    assert Path(info["public_key_path"]).read_text() == info["public_key_pem"]
    again = json.loads(cli("identity", "show", "--state-dir", str(state), "--json").stdout)
    assert again["peer_id"] == info["peer_id"]
    assert again["created"] is False

    out = tmp_path / "node.crt"
    issued = cli(
        "identity",
        "issue",
        "--ca",
        str(ca_dir),
        "--pubkey",
        info["public_key_path"],
        "--out",
        str(out),
        "--json",
    )
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["peer_id"] == info["peer_id"]
    parsed = certs.parse_node_certificate(
        x509.load_pem_x509_certificate(out.read_bytes()).public_bytes(certs.serialization.Encoding.DER)
    )
    assert parsed.san_peer_ids == (info["peer_id"],)
    assert certs.signed_by(parsed.certificate, certs.load_certificate(ca_dir / "ca.crt"))


def test_text_output_and_refusals(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    assert cli("identity", "ca-init", str(ca_dir)).returncode == 0
    key_before = (ca_dir / "ca.key").read_bytes()
    second = cli("identity", "ca-init", str(ca_dir))
    assert second.returncode == 1
    assert second.stdout == ""
    assert len(second.stderr.strip().splitlines()) == 1
    assert (ca_dir / "ca.key").read_bytes() == key_before
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600

    shown = cli("identity", "show", "--state-dir", str(tmp_path / "s"))
    assert shown.stdout.startswith("peer id: ")
    assert "BEGIN PUBLIC KEY" in shown.stdout

    # The private key is not a public key: bad usage, nothing written.
    bad = cli(
        "identity",
        "issue",
        "--ca",
        str(ca_dir),
        "--pubkey",
        str(tmp_path / "s" / "identity.key"),
        "--out",
        str(tmp_path / "x.crt"),
    )
    assert bad.returncode == 2
    assert not (tmp_path / "x.crt").exists()
    missing = cli(
        "identity",
        "issue",
        "--ca",
        str(tmp_path / "nope"),
        "--pubkey",
        str(tmp_path / "s" / "identity.pub"),
        "--out",
        str(tmp_path / "x.crt"),
    )
    assert missing.returncode == 1
    assert len(missing.stderr.strip().splitlines()) == 1
