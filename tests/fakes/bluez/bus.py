"""A private ``dbus-daemon`` of type system for the BLE tests: the code under test reaches it
through DBUS_SYSTEM_BUS_ADDRESS (dbus-fast and bleak honour it), so no real system bus is touched."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dbus_fast.aio import MessageBus

# A system-type bus that lets everyone do anything: the fake bluetoothd owns org.bluez and the
# node's processes export GATT applications on it, as they would on the real system bus.
_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


@dataclass
class PrivateBus:
    """A running private dbus-daemon; ``address`` is what DBUS_SYSTEM_BUS_ADDRESS takes."""

    directory: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.directory / "bus"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self, timeout: float = 10.0) -> PrivateBus:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "bus.conf"
        config.write_text(_CONFIG.format(socket=self.socket))
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--nosyslog"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        # The socket file appears at bind(), a moment before listen(): wait until it accepts.
        while not self._accepts():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dbus-daemon exited with {self.proc.returncode} before it listened")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dbus-daemon did not create {self.socket} within {timeout} s")
            time.sleep(0.01)
        return self

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.socket.exists():
            os.unlink(self.socket)


class _WaitWhenFull:
    """The bus socket as dbus-fast's writer sees it, with a full send buffer (EAGAIN) reported as
    nothing written: the writer then keeps the message and waits until the socket is writable,
    as libdbus (so a real bluetoothd) does. dbus-fast's asyncio writer instead treats EAGAIN as a
    broken connection and closes it (python-dbus-next issue 153, still so in dbus-fast 5.2)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: memoryview) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def sendmsg(self, buffers: list[memoryview], ancdata: list[tuple[int, int, bytes]]) -> int:
        try:
            return self._sock.sendmsg(buffers, ancdata)
        except BlockingIOError:
            return 0


def wait_when_full(bus: MessageBus) -> MessageBus:
    """Let ``bus`` (connected) ride out a full socket instead of dropping the connection. The fake
    bluetoothd needs it: it relays every notification as a signal of its own, with no pacing (a
    peripheral's burst, or what queued while the machine was busy, goes out at once), and a
    dbus-daemon that reads slowly on a loaded machine filled its socket: the fake lost org.bluez,
    every link dropped. The node paces its own signals instead (bluez/objects.py drain)."""
    writer = bus._writer  # dbus-fast's internals; checked by tests/ble/test_fake_bus.py
    assert writer is not None, "wait_when_full needs a connected bus"
    writer.sock = _WaitWhenFull(writer.sock)  # type: ignore[assignment]
    return bus
