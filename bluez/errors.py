"""The root of every error the ``bluez`` package raises."""


class BluezError(Exception):
    """Root of every error raised by the bluez package."""
