"""Draws an episode afterwards from the physics states the sim node recorded (its QPOS_LOG), so that rendering never
runs inside the 50 Hz control loop: a strip of frames as one PNG and, when an encoder is at hand (the
`imageio-ffmpeg` package's ffmpeg, or one on the PATH), a short MP4.

    MUJOCO_GL=egl python render.py QPOS_LOG --png strip.png [--frames 6] [--width 320] [--mp4 episode.mp4]

Rendering is offscreen: MUJOCO_GL=egl (Debian's libegl1 + libegl-mesa0) or osmesa (libosmesa6); setup.sh installs
one where neither is there. The camera is the scene's `front` camera if it has one, else MuJoCo's free camera.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG (no dependency beyond zlib), written to a temporary file and renamed."""
    h, w, _ = rgb.shape  # [height, width, 3] uint8
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)


def ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("qpos_log")
    p.add_argument("--png", required=True, help="the strip of frames")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--width", type=int, default=320, help="of one frame (height: 3/4 of it)")
    p.add_argument("--mp4", help="also a video of the whole episode (5 frames per recorded second, sped up 4x)")
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco  # after MUJOCO_GL is set

    from so101_sim import _scene_dir

    log = json.loads(Path(args.qpos_log).read_text())
    states = np.asarray(log["qpos"], dtype=np.float64)  # [n, 1 + nq]: sim time, qpos
    if states.ndim != 2 or len(states) == 0:
        raise SystemExit(f"render: {args.qpos_log} holds no states")
    folder = _scene_dir(Path(log["scene"]))
    try:
        model = mujoco.MjModel.from_xml_path(str(folder / "scene.xml"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if states.shape[1] != 1 + model.nq:
        raise SystemExit(f"render: the states have {states.shape[1] - 1} values, the scene's qpos {model.nq}")
    data = mujoco.MjData(model)
    w = max(64, min(args.width, model.vis.global_.offwidth))
    w -= w % 2  # even sizes, as the video encoder needs
    h = min(w * 3 // 4, model.vis.global_.offheight) // 2 * 2
    renderer = mujoco.Renderer(model, h, w)
    camera = "front" if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front") >= 0 else -1

    def frame(i: int) -> np.ndarray:
        data.qpos[:] = states[i, 1:]
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=camera)
        return renderer.render()  # [h, w, 3] uint8

    try:
        n = max(1, min(args.frames, len(states)))
        picks = np.linspace(0, len(states) - 1, n).round().astype(int)
        gap = np.full((h, 4, 3), 255, dtype=np.uint8)
        parts = []
        for i in picks:
            parts += [frame(int(i)), gap]
        write_png(Path(args.png), np.concatenate(parts[:-1], axis=1))
        print(f"render: {args.png}: {n} frames at t = {[float(states[i, 0]) for i in picks]} s", file=sys.stderr)
        if args.mp4:
            exe = ffmpeg()
            if exe is None:
                print("render: no ffmpeg (pip install imageio-ffmpeg): no video", file=sys.stderr)
            else:
                tmp = Path(args.mp4).with_suffix(".tmp.mp4")
                cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}"]
                cmd += ["-r", "20", "-i", "-", "-pix_fmt", "yuv420p", "-vcodec", "libx264", str(tmp)]
                enc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
                for i in range(len(states)):
                    enc.stdin.write(frame(i).tobytes())
                enc.stdin.close()
                if enc.wait() != 0:
                    raise SystemExit(f"render: ffmpeg failed ({enc.returncode})")
                tmp.replace(args.mp4)
                print(f"render: {args.mp4}: {len(states)} frames", file=sys.stderr)
    finally:
        renderer.close()  # before the interpreter exits, or the EGL context is torn down in the wrong order
    return 0


if __name__ == "__main__":
    sys.exit(main())
