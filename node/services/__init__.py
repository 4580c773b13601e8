"""The daemon and its components, one shape each (``service.Service``): built from config, started and
stopped by ``daemon.Node``.
"""
