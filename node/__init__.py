"""bitcraps-node: connects BitCraps game peers over BLE, UDP, TCP+TLS and TURN."""

__version__ = "0.1.0"
