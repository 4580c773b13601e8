"""Messages over datagram paths (UDP, TURN, BLE), sans-IO: the fragment wire format and the
fragmenter (``fragments``), bounded reassembly (``reassembly``) and their errors (``errors``).
"""
