"""bluez-peripheral's characteristic with its StartNotify/StopNotify flag check fixed.

bluez-peripheral 0.2.0a5 checks ``not self.flags | NOTIFY``, which is never true, so a
StartNotify on a characteristic without notify or indicate is accepted (and a central "subscribes"
to something that never notifies). ``NodeCharacteristic`` overrides both methods with the check
meant, ``flags & (NOTIFY | INDICATE)``, answering org.bluez.Error.NotSupported as gatt-api.txt
lists for StartNotify.

This module deliberately has no ``from __future__ import annotations``: dbus-fast reads the
methods' annotations at class creation.
"""

from bluez_peripheral.error import NotSupportedError
from bluez_peripheral.gatt.characteristic import CharacteristicFlags, characteristic
from dbus_fast.service import method

_NOTIFYING = CharacteristicFlags.NOTIFY | CharacteristicFlags.INDICATE


class NodeCharacteristic(characteristic):  # type: ignore[misc]  # bluez_peripheral ships no hints
    """A GATT characteristic of the node's service (see the module's doc for the fix)."""

    # Same Python names as the methods they replace, so dbus-fast exports only these.
    @method("StartNotify")
    def _start_notify(self) -> None:
        if not self.flags & _NOTIFYING:
            raise NotSupportedError("the characteristic has neither notify nor indicate")
        self._notify = True

    @method("StopNotify")
    def _stop_notify(self) -> None:
        if not self.flags & _NOTIFYING:
            raise NotSupportedError("the characteristic has neither notify nor indicate")
        self._notify = False

    @property
    def notifying(self) -> bool:
        """A central is subscribed (bluetoothd called StartNotify and not yet StopNotify)."""
        return bool(self._notify)
