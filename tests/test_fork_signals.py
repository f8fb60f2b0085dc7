"""Processes (issue 20, rows 15 and 16): fork() while another thread is inside Engine.segment, and
Ctrl-C during a long Engine call without a progress callback. Both run in subprocesses bounded by
timeouts (a hang fails the test instead of hanging the suite)."""
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_fork_while_another_thread_segments(model):
    # Before: the child inherited the executor's mutex locked by the parent's other thread, and its
    # first segment blocked forever. Now fork() waits for the tile in flight (pthread_atfork, see
    # csrc/core/thread_pool.h) and the child's call returns in normal time.
    code = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        import numpy as np
        from unet_rt import Engine
        eng = Engine({str(model)!r}, threads=2, tile=124)
        big = (np.arange(1200 * 1200) % 251).astype(np.uint8).reshape(1200, 1200)
        small = big[:100, :100].copy()
        ref = eng.segment(small)
        stop = False
        inside = threading.Event()
        def busy():
            while not stop:
                inside.set()
                eng.segment(big)
        t = threading.Thread(target=busy, daemon=True)
        t.start()
        inside.wait()
        bad = 0
        for i in range(12):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                signal.alarm(20)              # a hang is killed by SIGALRM: the parent sees it
                ok = (eng.segment(small) == ref).all()
                os._exit(0 if ok else 3)
            _, st = os.waitpid(pid, 0)
            if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
                bad += 1
                print("child", i, "status", st, flush=True)
        stop = True
        t.join()
        print("BAD", bad)
        """)
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired:
        pytest.fail("the forking process hung")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BAD 0" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("call", ["segment", "instances"])  # predict: the same hook as segment
def test_ctrl_c_interrupts_a_long_call(model, call):
    # Before: without a progress callback the KeyboardInterrupt arrived after the whole call (90.6 s
    # for 8000 x 8000 on the shipped model). Now pending signals are checked between tiles.
    code = textwrap.dedent(f"""
        import signal, sys, time
        import numpy as np
        from unet_rt import Engine
        # Python's own SIGINT handler even where this test runs with SIGINT ignored (a background job of a
        # non-interactive shell inherits SIG_IGN, and Python then installs no handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        eng = Engine({str(model)!r}, threads=1, tile=124)
        img = (np.arange(6000 * 6000) % 251).astype(np.uint8).reshape(6000, 6000)
        eng.{call}(img[:200, :200])
        print("START", flush=True)
        t0 = time.monotonic()
        try:
            eng.{call}(img)
            print("FINISHED", time.monotonic() - t0, flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", time.monotonic(), flush=True)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "START", p.stderr.read()
        time.sleep(1.0)
        sent = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert "INTERRUPTED" in out, out + err
    latency = float(out.split("INTERRUPTED")[1].split()[0]) - sent
    assert latency < 1.5, f"KeyboardInterrupt {latency:.2f} s after SIGINT"
