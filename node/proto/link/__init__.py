"""The TCP-TLS link, sans-IO: length-prefixed frames (``frames``) and the link core with its in-band
identity proof (``stream_link``).
"""
