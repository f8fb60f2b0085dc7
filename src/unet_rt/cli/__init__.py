"""The ``unet-rt`` command line (``main``: the parser; one module per command: ``segment`` (with
``workers`` for ``--workers/--scheduler``), ``info``, ``evaluate``, ``calibrate``, ``compile``, ``train``)."""
from unet_rt.cli.main import main

__all__ = ["main"]
