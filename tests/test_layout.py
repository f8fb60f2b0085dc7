"""The package's layout holds together: every module imports (an import of a unet_rt module that does not
exist is invisible to the import contracts of `make lint`, which only see what exists), and the pieces that
must exist once do: one segment_file behind the CLI and --workers, one model-file validator."""
from __future__ import annotations

import importlib
import pkgutil
import warnings

import pytest

import unet_rt


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(unet_rt.__path__, "unet_rt.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old paths' shims warn by design
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            assert not (e.name or "").startswith("unet_rt"), f"{name} imports a module that does not exist: {e}"
        except ImportError as e:  # an optional extra that is not installed: the message must say which
            assert "pip install" in str(e) or "unet-rt[" in str(e), f"{name}: {e}"


def test_one_segment_file_behind_the_cli_and_the_workers():
    import inspect

    from unet_rt.cli import segment, workers

    assert "segment_file(" in inspect.getsource(segment.run)
    assert "segment_file(" in inspect.getsource(workers._segment_file)
    assert not hasattr(workers, "_instances_image") and "write_image" not in inspect.getsource(workers)


def test_every_import_of_a_unet_rt_module_names_one_that_exists():
    """Also the imports inside functions (the package imports its optional parts lazily), which neither
    importing the modules nor the import contracts reach."""
    import ast
    import importlib.util
    from pathlib import Path

    root = Path(unet_rt.__file__).parent
    missing = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for n in names:
                if n.split(".")[0] == "unet_rt" and importlib.util.find_spec(n) is None:
                    missing.append(f"{f.relative_to(root)}:{node.lineno} {n}")
    assert not missing, missing
