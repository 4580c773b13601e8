"""The datagram secure session, sans-IO: SIGMA-I handshake, ChaCha20-Poly1305, replay window and rekey
(``secure_session``), for UDP, TURN and BLE.
"""
