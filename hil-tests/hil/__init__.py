"""Targets for the hardware-in-the-loop tests: an installed node driven through commands only.

``target.Target`` is what a test sees; ``nspawn`` boots the image's rootfs as a board stand-in,
``ssh`` reaches a real board.
"""
