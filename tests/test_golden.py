"""The shipped model's outputs on the shipped samples, bit for bit as recorded (tests/golden/record.py):
Engine labels, probabilities and instances, the CLI's files with their metadata, the dask graph.
A change meant to keep behaviour (a refactoring, a move) must leave every digest equal; a change that
alters results on purpose re-records them in the same commit and says why."""
import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "golden"


def _recorder():
    spec = importlib.util.spec_from_file_location("golden_record", HERE / "record.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_golden_outputs_bit_for_bit():
    rec = _recorder()
    golden = json.loads((HERE / "golden.json").read_text())
    tier = rec.tier()
    if tier not in golden:
        pytest.skip(f"no golden digests recorded for the {tier} tier (recorded: {sorted(golden)})")
    now = rec.compute()
    want = golden[tier]
    missing = sorted(set(want) - set(now))
    if missing and all(k.startswith("dask/") for k in missing):
        pytest.importorskip("dask")
    assert not missing, f"not produced any more: {missing}"
    changed = sorted(k for k in want if now[k] != want[k])
    assert not changed, f"outputs changed on the {tier} tier: {changed}"
