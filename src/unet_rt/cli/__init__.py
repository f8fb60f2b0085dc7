"""The ``unet-rt`` command line (``app``: the parser and the segment / info / evaluate / calibrate /
train / export commands; ``compile``: the compile command; ``workers``: ``segment --workers``)."""
from unet_rt.cli.app import main

__all__ = ["main"]
