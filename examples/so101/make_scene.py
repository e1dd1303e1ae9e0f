"""Makes, at run time, a table-top scene and a task list that are not in the repository: blocks of random colours with
ids that are not colour names, two target areas with random names at random places in the arm's reach, and one
instruction per block. Each instruction is first carried out by the scripted controller (so101_sim.Tabletop, no
planner): a scene where one of them fails is drawn again, so the arm can do every task it is given.

    python make_scene.py --out DIR [--seed N] [--blocks 3]

Writes DIR/scene.xml and DIR/tasks.json (a JSON array of instructions, as the sim node's TASKS takes it), and prints
one JSON line: seed, tasks, and what the check found.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

from so101_sim import PALETTE, Tabletop

HERE = Path(__file__).resolve().parent
BLOCK_IDS = ["plum", "coal", "pebble", "acorn", "marble", "biscuit", "button", "domino", "nugget", "quartz"]
AREA_IDS = ["north", "south", "dock", "bay", "pad", "tray", "nest", "harbour", "porch", "shelf"]
HALF = 0.05  # an area's half extent (m)
MIN_GAP = 0.065  # between block centres at the start (m)


def scene_xml(blocks, areas) -> str:
    """scene.xml's arm, physics, lights and camera, with these blocks [(id, rgb, x, y)] and areas [(id, x, y)]."""
    head = (HERE / "scene.xml").read_text()
    head = head[head.index("<mujoco") : head.index("    <!-- Target areas")]
    lines = [head.rstrip("\n")]
    shades = [".9 .9 .9", ".2 .2 .2"]
    for (aid, x, y), shade in zip(areas, shades):
        lines.append(
            f'    <geom name="area_{aid}" type="box" pos="{x:.3f} {y:.3f} 0.0005" size="{HALF} {HALF} 0.0005" '
            f'rgba="{shade} 1" contype="0" conaffinity="0"/>'
        )
    for bid, rgb, x, y in blocks:
        r, g, b = rgb
        lines.append(
            f'    <body name="block_{bid}" pos="{x:.3f} {y:.3f} 0.02"><freejoint/><geom type="box" size=".02 .02 .02" '
            f'mass="0.1" rgba="{r} {g} {b} 1"/></body>'
        )
    sensor = '    <framepos name="so101/ee_pos" objtype="site" objname="gripperframe"/>'
    lines += ["  </worldbody>", "  <sensor>", sensor, "  </sensor>", "</mujoco>", ""]
    return "\n".join(lines)


def draw(rng: random.Random, n_blocks: int):
    areas_ids = rng.sample(AREA_IDS, 2)
    areas = [
        (areas_ids[0], rng.uniform(0.13, 0.21), rng.uniform(0.12, 0.16)),
        (areas_ids[1], rng.uniform(0.13, 0.21), -rng.uniform(0.12, 0.16)),
    ]
    colours = rng.sample(sorted(PALETTE), n_blocks)
    ids = rng.sample(BLOCK_IDS, n_blocks)
    spots = []
    for _ in range(10_000):
        p = (rng.uniform(0.2, 0.28), rng.uniform(-0.08, 0.08))
        clear = all(abs(p[0] - x) > HALF + 0.03 or abs(p[1] - y) > HALF + 0.03 for _, x, y in areas)
        if clear and all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= MIN_GAP**2 for q in spots):
            spots.append(p)
            if len(spots) == n_blocks:
                break
    else:
        raise ValueError(f"no room for {n_blocks} blocks")
    blocks = [(bid, PALETTE[c], x, y) for bid, c, (x, y) in zip(ids, colours, spots)]
    tasks = [(bid, c, rng.choice(areas)[0]) for bid, c in zip(ids, colours)]
    return blocks, areas, tasks


def check(scene: Path, tasks) -> list[str]:
    """Runs each (block, colour, area) task with the scripted controller; what went wrong, if anything."""
    table = Tabletop(scene)
    wrong = []
    try:
        for bid, colour, area in tasks:
            if table.blocks[bid][1] != colour:
                wrong.append(f"{bid} reads as {table.blocks[bid][1]}, not {colour}")
            table.start(bid, area)
            t0 = table.time
            while table.skill is not None and table.time - t0 < 30:
                table.tick()
            if table.area_of(bid) != area:
                wrong.append(f"{bid} -> {area}: ended in {table.area_of(bid)}")
    finally:
        table.close()
    return wrong


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=None, help="default: from the clock")
    p.add_argument("--blocks", type=int, default=3)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    for attempt in range(8):
        rng = random.Random(seed + attempt)
        blocks, areas, tasks = draw(rng, args.blocks)
        (out / "scene.xml").write_text(scene_xml(blocks, areas))
        wrong = check(out / "scene.xml", tasks)
        if not wrong:
            texts = [f"put the {c} block in the {a} area" for _, c, a in tasks]
            (out / "tasks.json").write_text(json.dumps(texts) + "\n")
            print(json.dumps({"seed": seed + attempt, "tasks": texts, "rejected": attempt}))
            return 0
        print(f"make_scene: seed {seed + attempt} rejected: {wrong}", file=sys.stderr)
    print("make_scene: no workable scene in 8 draws", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
