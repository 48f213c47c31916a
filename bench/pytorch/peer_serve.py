"""The Python side of bench/lib/peer.ts: one JSON command per line on stdin ({"cmd": "setup",
"case": ...} | {"cmd": "step"} | {"cmd": "quit"}), one JSON answer per line on stdout."""
import json
import sys
import time

import torch


def serve(threads, make_step):
    """Answer commands until "quit"; `make_step(case)` builds the step function a "setup" names."""
    print(json.dumps({"torch": torch.__version__, "threads": threads}), flush=True)
    step = None
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "setup":
            step = None  # free the previous case before building the next
            step = make_step(cmd["case"])
            print(json.dumps({"ok": True}), flush=True)
        elif cmd["cmd"] == "step":
            t0 = time.perf_counter()
            step()
            print(json.dumps({"ms": (time.perf_counter() - t0) * 1000}), flush=True)
        elif cmd["cmd"] == "quit":
            break
