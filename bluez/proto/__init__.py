"""Sans-IO cores of the BLE transport: link fragmentation (``fragments``) and the mesh relay
(``mesh``). No D-Bus, no asyncio, no clock: ``now`` is passed in."""
