"""Helpers shared by more than one test tier (a helper used by one tier stays in that tier's folder).

- ``nodeproc``: the node as a real process (``start_node``, ``RunningNode``, ``cli``, a stand-in
  for systemd's notify socket, the control socket);
- ``tlsnodes``: TCP-TLS identities, a fleet CA, credentials, transports on loopback, ``ping_once``
  and ``eventually`` (bounded polling);
- ``link_frames``: hostile TCP-TLS link traffic for hypothesis, and an oracle framing the wire;
- ``session_verifiers``: the smallest honest secure-session trust policies (pinned, development);
- ``prerequisites``: a missing tool or artefact skips with a reason, and fails under ``CI=true``.
"""
