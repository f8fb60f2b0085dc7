"""Peak resident memory of this process, for the memory tests' subprocesses.

Reads VmHWM from /proc/self/status: the high-water mark of this process image alone. getrusage's
ru_maxrss is not usable here: Linux carries it across exec, so a child started from a large pytest
process would report the parent's peak (seen: 1.05 GB for a child that used 0.8 GB).
"""


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
