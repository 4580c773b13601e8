"""``python -m tests.fakes.bluez --bus ADDRESS --adapters N``: the fake bluetoothd as a process,
for tests that run nodes as real processes. It prints "ready" on stdout once org.bluez is owned
and every adapter exported; test hooks are lines on stdin:
``remove hciN``, ``add N``, ``restart``, ``vanish hciN ADDRESS``, ``mtu hciN VALUE``,
``range hciN hciM on|off``, ``power hciN on|off``; each is
answered "ok" or "error <what>". It exits on end of stdin or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.fakes.bluez.daemon import FakeBluetoothd


async def _hook(daemon: FakeBluetoothd, words: list[str]) -> None:
    match words:
        case ["remove", name]:
            daemon.remove_adapter(name)
        case ["add", index]:
            daemon.add_adapter(int(index))
        case ["restart"]:
            await daemon.restart()
        case ["vanish", name, address]:
            await daemon.vanish(name, address)
        case ["mtu", name, value]:
            daemon.set_mtu(name, int(value))
        case ["range", first, second, "on" | "off" as state]:
            await daemon.set_range(first, second, state == "on")
        case ["power", name, "on" | "off" as state]:
            daemon.set_powered(daemon.adapter(name), state == "on")
        case _:
            raise ValueError(f"unknown hook {' '.join(words)!r}")


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.bluez")
    parser.add_argument("--bus", required=True, help="the bus address, e.g. unix:path=/tmp/x/bus")
    parser.add_argument("--adapters", type=int, default=2)
    parser.add_argument(
        "--out-of-range", action="append", default=[], metavar="hciN,hciM", help="a pair that cannot hear"
    )
    args = parser.parse_args(argv)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with FakeBluetoothd(args.bus, adapters=args.adapters) as daemon:
        for pair in args.out_of_range:
            first, second = pair.split(",")
            await daemon.set_range(first, second, False)
        print("ready", flush=True)
        while line := await reader.readline():
            try:
                await _hook(daemon, line.decode().split())
            except (KeyError, ValueError) as error:
                print(f"error {error!r}", flush=True)
            else:
                print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
