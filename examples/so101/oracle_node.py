"""A planner that costs nothing: it answers each world state at once with the action the instruction asks for
(`move_block` of the named colour to the named area when the arm is idle and the task is not done yet, else `wait`),
in hearth's decision-line format and output metadata. `dataflow-oracle.yml` runs it in hearth's place, to measure the
control loop with the planner idle and to show how many tasks a perfect planner completes in the same time.
"""

import json
import sys
import time

import pyarrow as pa
from dora import Node

from task_node import PATTERN, satisfied


def choose(world: dict) -> dict:
    m = PATTERN.search(world.get("instruction", ""))
    if m is None or world.get("arm") != "idle" or satisfied(world["instruction"], world):
        return {"skill": "wait", "args": {}}
    colour, area = m.group(1).lower(), m.group(2).lower()
    block = next((b["id"] for b in world["blocks"] if b["color"] == colour and b["id"] in world["pickable"]), None)
    if block is None or area not in [a["id"] for a in world["areas"]]:
        return {"skill": "wait", "args": {}}
    return {"skill": "move_block", "args": {"block": block, "area": area}}


def main() -> int:
    node = Node()
    step = 0
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT" or event["id"] != "world":
            continue
        t = time.monotonic()
        action = choose(json.loads(event["value"][0].as_py()))
        line = json.dumps({"step": step, "action": action, "source": "oracle"})
        meta = dict(event["metadata"])
        meta.update({"source": "oracle", "step": step, "dropped_frames": 0, "latency_ms": (time.monotonic() - t) * 1e3})
        node.send_output("action", pa.array([line]), meta)
        step += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
