"""The ``unet-rt`` command line (``parser``: the parser and ``main``; one module per command: ``segment`` (with
``workers`` for ``--workers/--scheduler``), ``info``, ``evaluate``, ``calibrate``, ``compile``, ``train``)."""
from unet_rt.cli.parser import main

__all__ = ["main"]
