"""Old import paths kept working for a while: each shim module makes its old name an alias of the
module's new home and warns once (DeprecationWarning)."""
from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed; import {new} instead", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
