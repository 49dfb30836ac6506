"""First-call cost of the numba backend: compile with a cold cache, then load from a warm one.

    python bench/jit_cost.py

Each measurement runs in a fresh interpreter, so nothing is shared but numba's on-disk cache
(``cache=True`` writes it beside the installed zmfast/_backends/numba.py).
"""

import json
import pathlib
import subprocess
import sys

FIRST_CALLS = r"""
import json, time
import numpy as np
t0 = time.perf_counter()
import zmfast as zm
zm.set_backend("numba")
t1 = time.perf_counter()
x = np.zeros((64, 32, 32, 3), np.uint8)
steps = {}
for name, run in [
        ("moments axis=0 (uint8)", lambda: zm.moments(x, axis=0)),
        ("std axis=(0,1,2) (uint8)", lambda: zm.std(x, axis=(0, 1, 2))),
        ("standardize per-channel float32", lambda: zm.standardize(x, [1, 2, 3], [4, 5, 6])),
        ("standardize channels_first", lambda: zm.standardize(x, 1.0, 2.0, channels_first=True)),
        ("same call, new shape", lambda: zm.moments(np.zeros((9, 7, 5, 3), np.uint8), axis=0))]:
    start = time.perf_counter()
    run()
    steps[name] = time.perf_counter() - start
print(json.dumps({"import": t1 - t0, "steps": steps}))
"""


def measure():
    out = subprocess.run([sys.executable, "-c", FIRST_CALLS], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    import zmfast._backends.numba as backend
    cache = pathlib.Path(backend.__file__).parent / "__pycache__"
    for entry in cache.glob("numba.*.nb[ic]"):
        entry.unlink()
    cold, warm = measure(), measure()
    print("| first call | cold cache (compiles) | warm cache (loads) |")
    print("|---|---:|---:|")
    for name in cold["steps"]:
        print(f"| {name} | {cold['steps'][name]:.2f} s | {warm['steps'][name] * 1e3:.0f} ms |")
    print(f"| import zmfast + set_backend | {cold['import']:.2f} s | {warm['import']:.2f} s |")


if __name__ == "__main__":
    main()
