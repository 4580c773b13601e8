"""How many bytes bluetoothd makes of an LEAdvertisement1's properties, so the fake refuses what
the real one refuses on a controller without extended advertising (the boards', btvirt's).

As bluez 5.66 builds them (src/advertising.c, src/shared/ad.c):
- the advertising data holds the flags (3 bytes: set_flags()/get_adv_flags(); calc_max_adv_len()
  counts them), each UUID list (2 + n * size: ad.c uuid_list_length()), each service data
  (2 + UUID size + data: ad.c uuid_data_length()), each manufacturer data (2 + 2 + data),
  Appearance unless it is 0xffff (4: generate_adv_data()), tx-power when included (3); more than
  31 bytes and refresh_legacy_adv() fails ("Advertising data too long"), so RegisterAdvertisement
  answers org.bluez.Error.Failed "Failed to parse advertisement." (parse_advertisement());
- the scan response holds only LocalName (generate_scan_rsp()), shortened to fit 31 bytes
  (ad.c serialize_name(): type 0x08, never refused).
A UUID is 2 bytes when it is a Bluetooth base UUID with 16 bits (lib/uuid.c bt_string_to_uuid()),
else 16 (32-bit base UUIDs are left out here: nothing of ours uses them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

LEGACY_MAX = 31  # Core 5.3 Vol 6 Part B 2.3.1.1: AdvData and ScanRspData are 0-31 octets
FLAGS_LEN = 3
APPEARANCE_LEN = 4
TX_POWER_LEN = 3
NO_APPEARANCE = 0xFFFF
_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def full_uuid(uuid: str) -> str:
    """As a scanner's Device1 shows it: bluetoothd writes every UUID it parsed from the air in
    128-bit form (src/eir.c: bt_uuid2string()), while bluez-peripheral exports "fff0"."""
    text = uuid.lower()
    return f"0000{text}{_BASE_SUFFIX}" if len(text) == 4 else text


def uuid_size(uuid: str) -> int:
    text = uuid.lower()
    if len(text) == 4 or (text.startswith("0000") and text.endswith(_BASE_SUFFIX)):
        return 2
    return 16


def advertising_length(
    uuids: Sequence[str],
    service_data: Mapping[str, bytes],
    manufacturer_data: Mapping[int, bytes],
    appearance: int | None,
    includes: Sequence[str],
) -> int:
    length = FLAGS_LEN
    for size in sorted({uuid_size(u) for u in uuids}):
        length += 2 + size * sum(1 for u in uuids if uuid_size(u) == size)
    length += sum(2 + uuid_size(uuid) + len(data) for uuid, data in service_data.items())
    length += sum(2 + 2 + len(data) for data in manufacturer_data.values())
    if (appearance is not None and appearance != NO_APPEARANCE) or "appearance" in includes:
        length += APPEARANCE_LEN
    if "tx-power" in includes:
        length += TX_POWER_LEN
    return length


def scan_response_name(local_name: str) -> str:
    """The name as it reaches a scanner: cut to what fits the scan response's one structure."""
    return local_name.encode()[: LEGACY_MAX - 2].decode(errors="ignore")
