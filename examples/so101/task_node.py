"""The dora node that gives the arm its instructions, one at a time, and judges when each is done.

It receives the task list from the sim node (which reads it from its TASKS env), sends the first instruction, and
watches the world states: an instruction "put the COLOUR block in the AREA area" is done when a block of that colour
rests in that area while the arm is idle. Then, or after TASK_TIMEOUT_S seconds (env, default 60), it sends the next.
After the last it sends `{"finished": true, "tasks_done": k, "tasks_total": n}` and exits.
"""

import json
import os
import re
import sys
import time

import pyarrow as pa
from dora import Node

PATTERN = re.compile(r"put the (\w+) block (?:in|into|on|onto) the (\w+) area", re.IGNORECASE)


def satisfied(instruction: str, world: dict) -> bool:
    m = PATTERN.search(instruction)
    if m is None:
        return False
    colour, area = m.group(1).lower(), m.group(2).lower()
    return world.get("arm") == "idle" and any(
        b.get("color") == colour and b.get("area") == area for b in world.get("blocks", [])
    )


def main() -> int:
    timeout_s = float(os.environ.get("TASK_TIMEOUT_S", "60"))
    node = Node()
    tasks, index, done, started = None, 0, 0, 0.0

    def send(finished=False):
        text = "" if finished else tasks[index]
        msg = {"text": text, "index": index, "tasks_done": done, "tasks_total": len(tasks), "finished": finished}
        node.send_output("instruction", pa.array([json.dumps(msg)]))
        print(f"task: {msg}", file=sys.stderr)

    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        value = event["value"][0].as_py()
        if event["id"] == "tasks" and tasks is None:
            tasks = json.loads(value)
            for t in tasks:
                if PATTERN.search(t) is None:
                    print(f"task: cannot judge {t!r} (not 'put the COLOUR block in the AREA area')", file=sys.stderr)
            started = time.monotonic()
            if not tasks:
                send(finished=True)
                break
            send()
        elif event["id"] == "world" and tasks is not None:
            world = json.loads(value)
            ok = satisfied(tasks[index], world)
            if ok or time.monotonic() - started > timeout_s:
                done += ok
                index += 1
                started = time.monotonic()
                if index == len(tasks):
                    send(finished=True)
                    break
                send()
    return 0


if __name__ == "__main__":
    sys.exit(main())
