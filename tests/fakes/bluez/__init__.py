"""A fake BlueZ for the BLE tests: a private system-type dbus-daemon (bus.py) and a fake
bluetoothd with several adapters joined by a virtual radio (daemon.py, interfaces.py)."""

from tests.fakes.bluez.bus import PrivateBus
from tests.fakes.bluez.daemon import FakeBluetoothd, adapter_address

__all__ = ["FakeBluetoothd", "PrivateBus", "adapter_address"]
