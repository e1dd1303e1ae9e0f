"""checks.py, the robot test's judge of action validity, accepts exactly the actions the world state allows.
Standard library only: `python -m unittest examples/so101/test_checks.py` (scripts/test-robot.sh runs it)."""

import json
import unittest
from pathlib import Path

from checks import Unsupported, action_problem

SPACE = json.loads((Path(__file__).parent / "actions.json").read_text())
IDLE = {"pickable": ["red"], "areas": [{"id": "left"}, {"id": "right"}], "blocks": []}
BUSY = {"pickable": [], "areas": [{"id": "left"}, {"id": "right"}], "blocks": []}


def move(**args):
    return {"skill": "move_block", "args": args}


class ChecksTest(unittest.TestCase):
    def test_valid_actions_pass(self):
        self.assertIsNone(action_problem(SPACE, IDLE, move(block="red", area="right")))
        self.assertIsNone(action_problem(SPACE, BUSY, {"skill": "wait", "args": {}}))

    def test_invalid_actions_are_named(self):
        bad = [
            (IDLE, move(block="blue", area="left")),  # a block that is not pickable
            (IDLE, move(block="red", area="up")),  # an area that does not exist
            (BUSY, move(block="red", area="left")),  # move_block is not offered while busy
            (IDLE, move(block="red")),  # a required argument missing
            (IDLE, move(block="red", area="left", speed=1)),  # an argument the schema does not have
            (IDLE, {"skill": "wait", "args": {"x": 1}}),
            (IDLE, {"skill": "fly", "args": {}}),
            (IDLE, {"skill": "wait"}),
        ]
        for world, action in bad:
            self.assertIsNotNone(action_problem(SPACE, world, action), action)

    def test_a_missing_world_path_is_a_problem_not_a_pass(self):
        self.assertIn("no /pickable", action_problem(SPACE, {"areas": []}, move(block="red", area="left")))

    def test_unknown_schema_keywords_refuse_to_judge(self):
        space = {"skills": [{"name": "s", "parameters": {"type": "object", "properties": {"n": {"pattern": "x"}}}}]}
        with self.assertRaises(Unsupported):
            action_problem(space, {}, {"skill": "s", "args": {"n": "x"}})


if __name__ == "__main__":
    unittest.main()
