"""In-memory fakes that stand in for real servers and networks in the unit tier (no sockets, virtual
time): a sans-IO STUN server (``stun_server``) and the TURN server built on it (``turn_server``), a
virtual NAT (``vnat``: RFC 4787 mapping x filtering, port allocation), a virtual UDP network
(``vnet``) and a TURN network of clients, server and peers (``turn_net``). tests/unit/test_fakes.py
checks that they themselves behave as the RFCs say."""
