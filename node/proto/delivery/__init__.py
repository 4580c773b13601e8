"""Delivery: exactly-once, in-order-per-class messages over whichever paths the coordinator picks.

Sans-IO (no sockets, asyncio or clock; ``now`` is passed in). One ``PeerSender`` per destination
peer and one ``Receiver`` per node; their DATA and ACK frames (wire.py) travel as Frame payloads
over any transport. ids.py: message ids (epoch + class + sequence); settings.py: the numbers;
rtt.py: RFC 6298 RTO; sender.py / receiver.py: the two halves; events.py: what they report.
"""
