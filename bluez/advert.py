"""What the node puts in its LE advertisement, and how a scanner reads the peer-id prefix back.

A legacy advertisement holds 31 bytes, and so does its scan response (Core 5.3 Vol 6 Part B
2.3.1.1, 2.3.2.2); extended advertising is not there on the boards' controllers. BlueZ 5.66
(Debian bookworm, Raspberry Pi OS) decides where each property goes (bluez 5.66 src/advertising.c):
- generate_adv_data() puts ServiceUUIDs, ServiceData, ManufacturerData and Appearance (unless it
  is 0xffff) in the advertising data, plus 3 bytes of flags; refresh_legacy_adv() refuses more
  than calc_max_adv_len() ("Advertising data too long", RegisterAdvertisement answers
  org.bluez.Error.Failed "Failed to parse advertisement.").
- generate_scan_rsp() puts only LocalName in the scan response (5.66 has no
  ScanResponseServiceData; that came later and is experimental).
And on the scanning side (bluez 5.66 src/adapter.c is_filter_match(), src/eir.c): a
SetDiscoveryFilter UUIDs filter matches only the UUID lists (eir_data->services); service data
goes to eir_data->sd_list and matches nothing, nor does it show in Device1.UUIDs. The kernel
merges a scan response into the advertising report it answers, so both reach Device1.

Hence: the advertising data is flags (3) + the complete list of our 128-bit service UUID (18) =
21 bytes, found by UUID filters (BlueZ's and bleak's); the peer-id prefix rides in the scan
response as the local name ``bitcraps-<16 hex digits>`` (2 + 25 = 27 bytes). Service data keyed
by our UUID is still read first, for a peer that sends it (a bumble peripheral in the BLE VM, or
a later format in ScanResponseServiceData).
"""

from __future__ import annotations

from collections.abc import Mapping

from bluez.defs import NODE_SERVICE_UUID, PEER_ID_PREFIX_LEN

NAME_STEM = "bitcraps-"
_HEX = frozenset("0123456789abcdefABCDEF")
# bluez 5.66 src/advertising.c parse_appearance()/generate_adv_data(): 0xffff leaves the
# 4-byte Appearance structure out of the advertising data.
NO_APPEARANCE = 0xFFFF


def advert_name(prefix: bytes) -> str:
    """The local name that carries ``prefix`` in our scan response."""
    return NAME_STEM + prefix.hex()


def prefix_from_advert(service_data: Mapping[str, bytes], local_name: str | None) -> bytes | None:
    """The peer-id prefix a node advertised, or None when neither its service data nor its name
    carries one (not one of ours, a broken one, or its scan response not heard yet)."""
    data = service_data.get(NODE_SERVICE_UUID)
    if data is not None and len(data) >= PEER_ID_PREFIX_LEN:
        return bytes(data[:PEER_ID_PREFIX_LEN])
    if local_name is None or not local_name.startswith(NAME_STEM):
        return None
    digits = local_name[len(NAME_STEM) :]
    if len(digits) != 2 * PEER_ID_PREFIX_LEN or not all(c in _HEX for c in digits):
        return None
    return bytes.fromhex(digits)
