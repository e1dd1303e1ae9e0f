"""The dora node that is the robot: MuJoCo physics and the SO-101's 50 Hz control loop (so101_sim.py), publishing the
world state several times a second and executing each action it receives.

Environment (from the node's `env` in the dataflow YAML):
  TASKS       JSON array of instructions ("put the red block in the left area"); handed to the task node.
  SUMMARY     where to write the episode summary (one JSON object; see below).
  SCENE       the MJCF scene (default: scene.xml beside this file).
  ACTIONS     the action space the planner uses, to check each action it sends (default: actions.json here).
  WORLD_HZ    world states per second (default 5).
  MAX_S       the episode's wall-clock limit in seconds (default 600).
  TICK_LOG    optional: a JSON file with every tick's lateness and whether the planner was deciding then.
  QPOS_LOG    optional: a JSON file with the physics state (MuJoCo qpos) at every world state, for render.py, which
              draws the episode afterwards (rendering stays out of the 50 Hz loop).
  RT_PRIORITY optional, 1-99: run the control loop under SCHED_FIFO at that priority (needs the privilege), as real
              robots run theirs. Off by default: the test measures the loop at ordinary priority.

The control loop runs tick k at t0 + k * 20 ms: a late tick runs as soon as it can, and its lateness (start minus due
time) is recorded; no tick is skipped. Between ticks the node waits for dora events with a timeout that ends at the
next tick's due time.

Each world state carries a frame number in its metadata (`frame`); the planner echoes its input's parameters, so each
action is checked (checks.py, independent of hearth) against the very world state it was decided on. An action is
executed when it arrives: `move_block` starts the skill if the arm is idle (one decided on an older frame can arrive
after another skill started; it is then not run, and counted as stale in the log), `wait` does nothing.

The summary: ticks, ticks_late (started more than 5 ms late), late_ms {p50, p99, max}, decisions, invalid_actions,
sources {model, fallback}, latency_ms {p50, p99} (from sending a world state to receiving the action decided on it),
dropped_frames (world states the planner skipped, as it reports them), tasks_done, tasks_total, episode_log.
"""

import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
from dora import Node

from checks import action_problem
from so101_sim import CONTROL_DT, Tabletop

HERE = Path(__file__).resolve().parent
LATE_MS = 5.0
DEFAULT_TASKS = [
    "put the red block in the left area",
    "put the blue block in the right area",
    "put the green block in the left area",
]


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 3)


def ticks_within(starts, intervals):
    """For each tick start time (ascending), whether it lies inside any of the (start, end) intervals."""
    out, i, ivs = [], 0, sorted(intervals)
    reach = float("-inf")  # the furthest end among intervals that began at or before the current tick
    for s in starts:
        while i < len(ivs) and ivs[i][0] <= s:
            reach = max(reach, ivs[i][1])
            i += 1
        out.append(s <= reach)
    return out


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


class Episode:
    """Everything the summary counts."""

    def __init__(self, space: dict):
        self.space = space
        self.frames = {}  # frame -> (world state, monotonic time sent)
        self.decisions = self.invalid = self.stale = 0
        self.sources = {"model": 0, "fallback": 0}
        self.latency_ms = []
        self.deciding = []  # (start, end) monotonic intervals in which the planner was deciding
        self.dropped = 0
        self.episode_log = None
        self.tasks_done = 0
        self.tasks_total = None
        self.handling = []  # (tick, ms) spent handling each action

    def on_action(self, table: Tabletop, line: str, meta: dict, now: float) -> None:
        self.decisions += 1
        frame = meta.get("frame")
        world, sent = self.frames.get(frame, (None, None))
        try:
            decision = json.loads(line)
            action = decision["action"]
        except (ValueError, KeyError, TypeError) as e:
            self.invalid += 1
            print(f"sim: action {self.decisions} is not a decision line ({e}): {line[:200]!r}", file=sys.stderr)
            return
        problem = "it names no frame this node sent" if world is None else action_problem(self.space, world, action)
        source = str(meta.get("source", decision.get("source", "?")))
        self.sources[source] = self.sources.get(source, 0) + 1
        if sent is not None:
            self.latency_ms.append((now - sent) * 1e3)
        node_ms = meta.get("latency_ms")
        if isinstance(node_ms, (int, float)):
            self.deciding.append((now - node_ms / 1e3, now))
        if isinstance(meta.get("dropped_frames"), int):
            self.dropped = max(self.dropped, meta["dropped_frames"])
        if meta.get("episode_log"):
            self.episode_log = str(meta["episode_log"])
        if problem is not None:
            self.invalid += 1
            print(f"sim: INVALID action {action!r} for frame {frame}: {problem}", file=sys.stderr)
            return
        if action["skill"] == "move_block":
            if table.skill is None:
                table.start(action["args"]["block"], action["args"]["area"])
                print(f"sim: t={table.time:.1f}s move {action['args']} ({source}, frame {frame})", file=sys.stderr)
            else:
                self.stale += 1


def main() -> int:
    tasks = json.loads(os.environ.get("TASKS") or json.dumps(DEFAULT_TASKS))
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise SystemExit("sim: TASKS must be a JSON array of strings")
    summary_path = Path(os.environ.get("SUMMARY", "so101-summary.json"))
    scene = Path(os.environ.get("SCENE", HERE / "scene.xml"))
    space = json.loads(Path(os.environ.get("ACTIONS", HERE / "actions.json")).read_text())
    world_every = max(1, round(1 / (float(os.environ.get("WORLD_HZ", "5")) * CONTROL_DT)))
    max_s = float(os.environ.get("MAX_S", "600"))

    table = Tabletop(scene)
    ep = Episode(space)
    node = Node()
    rt = int(os.environ.get("RT_PRIORITY", "0"))
    if rt:
        # After Node(): only this thread, the control loop, runs in real time, not dora's own threads.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt))
    node.send_output("tasks", pa.array([json.dumps(tasks)]))
    instruction = ""
    late_ms, starts, tick_ms = [], [], []
    qpos = []  # [sim time, *qpos] at every world state
    finished = False
    # Warm-up, untimed: the first next() that times out took ~120 ms (dora's Python API sets something up then), and
    # the ticks that caught up after it were counted late. Events read here are handled first in the loop.
    pending = []
    while (event := node.next(timeout=0.001)) is not None and event["type"] != "ERROR":
        pending.append(event)
    t0 = time.monotonic()
    k = 0
    world_offset, first_world = 2 % world_every, True
    while not finished:
        now = time.monotonic()
        due = t0 + k * CONTROL_DT
        if now < due:
            event = pending.pop(0) if pending else node.next(timeout=due - now)
            if event is None:
                # No event: the timeout ended, or every sender is gone (then next() returns at once).
                rest = due - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
                continue
            kind = event["type"]
            if kind == "STOP":
                break
            if kind != "INPUT":
                continue
            value = event["value"][0].as_py() if len(event["value"]) else ""
            if event["id"] == "action":
                h0 = time.monotonic()
                ep.on_action(table, value, event["metadata"], h0)
                ep.handling.append((k, round((time.monotonic() - h0) * 1e3, 3)))
            elif event["id"] == "instruction":
                msg = json.loads(value)
                instruction = msg.get("text", "")
                ep.tasks_done, ep.tasks_total = msg.get("tasks_done", 0), msg.get("tasks_total")
                finished = bool(msg.get("finished"))
                print(f"sim: t={table.time:.1f}s instruction {msg}", file=sys.stderr)
            continue
        late_ms.append((now - due) * 1e3)
        starts.append(now)
        w0 = time.monotonic()
        table.tick()
        tick_ms.append(round((time.monotonic() - w0) * 1e3, 3))
        # World states go out two ticks after an IK tick (every 5th, `Tabletop.tick`): on the same tick the two
        # together overran the 20 ms period now and then, with or without a planner.
        if k % world_every == world_offset:
            world = table.world(instruction)
            ep.frames[k] = (world, time.monotonic())
            qpos.append([round(table.time, 3), *(round(float(v), 5) for v in table.env.data.qpos)])
            ep.frames.pop(k - 50 * world_every, None)  # keep ~50 frames: an action decided on an older one is stale
            s0 = time.monotonic()
            node.send_output("world", pa.array([json.dumps(world)]), {"frame": k})
            if first_world:
                # dora sets up an output's channel on its first send (~100 ms here): the schedule moves by that
                # once, rather than counting the ticks that catch up after it as late.
                t0 += time.monotonic() - s0
                first_world = False
        k += 1
        if now - t0 > max_s:
            print(f"sim: the episode hit its {max_s} s limit", file=sys.stderr)
            break

    ticks = len(late_ms)
    summary = {
        "ticks": ticks,
        "ticks_late": sum(1 for x in late_ms if x > LATE_MS),
        "late_ms": {"p50": percentile(late_ms, 50), "p99": percentile(late_ms, 99), "max": percentile(late_ms, 100)},
        "decisions": ep.decisions,
        "invalid_actions": ep.invalid,
        "sources": ep.sources,
        "latency_ms": {"p50": percentile(ep.latency_ms, 50), "p99": percentile(ep.latency_ms, 99)},
        "dropped_frames": ep.dropped,
        "tasks_done": ep.tasks_done,
        "tasks_total": ep.tasks_total if ep.tasks_total is not None else len(tasks),
        "episode_log": ep.episode_log,
    }
    write_json(summary_path, summary)
    if os.environ.get("TICK_LOG"):
        deciding = ticks_within(starts, ep.deciding)
        write_json(
            Path(os.environ["TICK_LOG"]),
            {"late_ms": [round(x, 3) for x in late_ms], "deciding": deciding, "stale_actions": ep.stale,
            "tick_ms": tick_ms, "action_ms": ep.handling},
        )
    if os.environ.get("QPOS_LOG"):
        write_json(Path(os.environ["QPOS_LOG"]), {"scene": str(scene.resolve()), "qpos": qpos})
    print(f"sim: {json.dumps(summary)}", file=sys.stderr)
    table.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
