"""The fake bluetoothd keeps its bus when its socket fills, as a real bluetoothd (libdbus) does:
dbus-fast's asyncio writer closes the connection on EAGAIN, and a fake that lost org.bluez that
way while relaying a 100 KB message's notifications on a loaded machine dropped every link (the
two-node test failed delivery_failed: no path within the failover timeout)."""

from __future__ import annotations

import os
import signal

import pytest
from dbus_fast import Message, MessageType

from tests.fakes.bluez import FakeBluetoothd, PrivateBus

pytestmark = pytest.mark.ble

# Well past a unix socket's send buffer (net.core.wmem_default is 208 KiB).
_BURST = 1000
_SIGNAL_BYTES = 1000


async def test_the_fake_keeps_its_bus_while_the_bus_daemon_reads_nothing(
    private_bus: PrivateBus, fake_bluez: FakeBluetoothd
) -> None:
    assert private_bus.proc is not None
    bus = fake_bluez.bus
    os.kill(private_bus.proc.pid, signal.SIGSTOP)  # a dbus-daemon the machine did not schedule
    try:
        for _ in range(_BURST):
            bus.send(
                Message.new_signal("/org/bluez", "org.bluez.Test1", "Burst", "ay", [bytes(_SIGNAL_BYTES)])
            )
    finally:
        os.kill(private_bus.proc.pid, signal.SIGCONT)
    # Answered once the daemon has read everything queued ahead of it.
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="GetNameOwner",
            signature="s",
            body=["org.bluez"],
        )
    )
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    assert reply.body == [bus.unique_name] and bus.connected
