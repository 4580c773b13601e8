"""BlueZ over D-Bus: GATT peripheral, central links, the BLE transport and its mesh relay."""
