"""Direct paths between two peers behind NATs, sans-IO: candidates and their priorities
(``candidates``), which technique a pair of NATs calls for (``plan``), the check messages
(``wire``), the birthday and prediction schedules (``birthday``, ``prediction``) and the check
state machine that runs them (``agent``). Bytes, events and ``now`` in; datagrams out.
"""
