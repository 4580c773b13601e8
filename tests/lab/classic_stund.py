"""A classic RFC 3489 STUN server as a process: ``tests.fakes.classic_stun_server``'s model on
four real UDP sockets (two addresses x two ports, RFC 3489 §8), for the NAT lab's ``srv``.

    python -m tests.lab.classic_stund PRIMARY_IP ALTERNATE_IP PORT ALTERNATE_PORT

Each answer leaves from the socket of the address the model names (CHANGE-REQUEST answers come
from another one). Runs until SIGTERM; prints ``ready`` once every socket is bound.
"""

from __future__ import annotations

import ipaddress
import selectors
import signal
import socket
import sys

from tests.fakes.classic_stun_server import ClassicStunServerModel

MAX_DATAGRAM = 2048


def serve(primary_ip: str, alternate_ip: str, port: int, alternate_port: int) -> None:
    primary = (ipaddress.ip_address(primary_ip), port)
    alternate = (ipaddress.ip_address(alternate_ip), alternate_port)
    model = ClassicStunServerModel(primary, alternate, software="bitcraps classic test server")
    sockets = {}
    selector = selectors.DefaultSelector()
    try:
        for address in model.addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((str(address[0]), address[1]))
            sockets[address] = sock
            selector.register(sock, selectors.EVENT_READ, address)
        print("ready", flush=True)
        while True:
            for key, _ in selector.select():
                data, (ip, src_port) = key.fileobj.recvfrom(MAX_DATAGRAM)  # type: ignore[union-attr]
                src = (ipaddress.ip_address(ip), src_port)
                for out in model.receive(data, src, key.data, 0.0):
                    sockets[out.src].sendto(out.data, (str(out.dst[0]), out.dst[1]))
    finally:
        selector.close()
        for sock in sockets.values():
            sock.close()


def main() -> None:
    # SIGTERM ends the loop through SystemExit, so the finally above closes the sockets.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    primary_ip, alternate_ip, port, alternate_port = sys.argv[1:]
    serve(primary_ip, alternate_ip, int(port), int(alternate_port))


if __name__ == "__main__":
    main()
