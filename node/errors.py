"""The root of every error the ``node`` package raises.

Split as h11 and bleak do: a ``LocalError`` is our own misuse or environment (bad config, a
missing directory, a state machine driven wrongly); a ``RemoteError`` means a peer or server sent
something bad. Policies (retries, circuit breakers) decide on these types, never on message text.
"""


class NodeError(Exception):
    """Root of every error raised by the node package."""


class LocalError(NodeError):
    """Our misuse, configuration or environment is at fault."""


class RemoteError(NodeError):
    """A peer or server sent something malformed or unexpected."""


class SettingsError(LocalError):
    """The node's settings cannot be used: the configuration file, or a file it names (a CA, a
    certificate). Restarting cannot fix that, so ``run`` exits 2 for it and the systemd unit does
    not restart on exit 2 (``RestartPreventExitStatus=2``): a bad deployment does not loop."""
