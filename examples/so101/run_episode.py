"""Runs one headless episode of the SO-101 dataflow and reports (and with --check, asserts) what the robot test needs.

    python run_episode.py --out DIR [--model NAME] [--tasks JSON] [--scene MJCF] [--oracle] [--threads N]
                          [--nice N] [--sched other|batch|idle] [--deadline-ms D] [--rt PRIO] [--stop-after 900s] [--check] [--render [--video]]

It writes a copy of dataflow.yml (or dataflow-oracle.yml) with those settings beside it (the nodes' paths are
relative to it), runs `dora run` on it, and prints one JSON report: the summary, the ticks started more than 5 ms late
overall and while the planner was deciding, the load average, and whether the episode log replays. The sim node
also records the physics state at every world state (qpos.json), from which --render draws a strip of frames
(strip.png) and --video a video (episode.mp4; needs imageio-ffmpeg) afterwards, outside the control loop.
`hearth`, `dora` and `python` with the example's packages must be on PATH (see scripts/test-robot.sh).

--check fails (exit 1) unless: dora ran every node to a clean exit; the summary has exactly its fields; no action was
invalid for the world state it was decided on; every decision came from the model or the fallback; fewer than 1% of
the ticks started while the planner was deciding were more than 5 ms late (not with --no-lateness-check, for shared
machines such as CI's, where other jobs make the loop late: the figure is still reported); and `hearth replay`
reproduces the episode log.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUMMARY_FIELDS = {
    "ticks", "ticks_late", "late_ms", "decisions", "invalid_actions", "sources", "latency_ms", "dropped_frames",
    "tasks_done", "tasks_total", "episode_log",
}  # fmt: skip
LATE_MS = 5.0


def variant(args, out: Path) -> Path:
    """The dataflow with this run's settings, written beside the original."""
    src = (HERE / ("dataflow-oracle.yml" if args.oracle else "dataflow.yml")).read_text()
    env_lines = {
        "SUMMARY": str(out / "summary.json"),
        "TICK_LOG": str(out / "ticks.json"),
    }
    extra = {"QPOS_LOG": str(out / "qpos.json")}
    if args.tasks:
        env_lines["TASKS"] = args.tasks
    for key, value in env_lines.items():
        head = f"      {key}: "
        start = src.index(head)
        end = src.index("\n", start)
        src = src[:start] + head + json.dumps(value) + src[end:]
    if args.scene:
        extra["SCENE"] = str(Path(args.scene).resolve())
    if args.rt:
        extra["RT_PRIORITY"] = str(args.rt)
    for key, value in extra.items():
        src = src.replace("      SUMMARY: ", f"      {key}: {json.dumps(value)}\n      SUMMARY: ", 1)
    if not args.oracle:
        replace = {
            "args: dora-node smollm2-135m ": f"args: dora-node {args.model} ",
            'HEARTH_THREADS: "1"': f'HEARTH_THREADS: "{args.threads}"',
            'HEARTH_NICE: "10"': f'HEARTH_NICE: "{args.nice}"',
            'HEARTH_SCHED: "idle"': f'HEARTH_SCHED: "{args.sched}"',
            'HEARTH_DEADLINE_MS: "2000"': f'HEARTH_DEADLINE_MS: "{args.deadline_ms}"',
            "HEARTH_LOG: so101-episode.jsonl": f"HEARTH_LOG: {json.dumps(str(out / 'episode.jsonl'))}",
        }
        for old, new in replace.items():
            if old not in src:
                raise SystemExit(f"run_episode: dataflow.yml no longer has {old!r}")
            src = src.replace(old, new, 1)
    path = HERE / f"so101-run-{out.name}.yml"
    path.write_text(src)
    return path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks")
    p.add_argument("--scene")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--sched", default="idle", choices=["other", "batch", "idle"], help="hearth's scheduling policy")
    p.add_argument("--deadline-ms", type=int, default=2000)
    p.add_argument("--rt", type=int, default=0, help="run the control loop under SCHED_FIFO at this priority")
    p.add_argument("--stop-after", default="900s")
    p.add_argument("--check", action="store_true")
    p.add_argument("--no-lateness-check", action="store_true", help="report the late ticks but do not fail on them")
    p.add_argument("--render", action="store_true", help="afterwards, draw strip.png with render.py")
    p.add_argument("--video", action="store_true", help="with --render, also episode.mp4 (needs imageio-ffmpeg)")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for f in ("summary.json", "ticks.json", "episode.jsonl", "qpos.json", "strip.png", "episode.mp4"):
        (out / f).unlink(missing_ok=True)
    flow = variant(args, out)

    load_before = os.getloadavg()
    t = time.monotonic()
    with open(out / "dora.log", "w") as log:
        rc = subprocess.run(
            ["dora", "run", flow.name, "--stop-after", args.stop_after], cwd=HERE, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    wall_s = time.monotonic() - t
    load_after = os.getloadavg()
    flow.unlink()

    problems = []
    if rc != 0:
        problems.append(f"dora run exited {rc} (a node failed; see {out / 'dora.log'})")
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    ticks = json.loads((out / "ticks.json").read_text()) if (out / "ticks.json").exists() else None
    report = {"out": str(out), "wall_s": round(wall_s, 1), "loadavg_before": load_before, "loadavg_after": load_after}
    if summary is None or ticks is None:
        problems.append("the sim wrote no summary or tick log")
    else:
        report["summary"] = summary
        late = ticks["late_ms"]
        deciding = [x for x, d in zip(late, ticks["deciding"]) if d]
        report["late_share"] = round(sum(x > LATE_MS for x in late) / max(1, len(late)), 5)
        report["ticks_deciding"] = len(deciding)
        report["late_share_deciding"] = round(sum(x > LATE_MS for x in deciding) / max(1, len(deciding)), 5)
        report["stale_actions"] = ticks.get("stale_actions")
        if set(summary) != SUMMARY_FIELDS:
            problems.append(f"summary fields {sorted(summary)} are not {sorted(SUMMARY_FIELDS)}")
        if summary["decisions"] == 0:
            problems.append("no decision reached the controller")
        if summary["invalid_actions"] != 0:
            problems.append(f"{summary['invalid_actions']} invalid actions")
        if not args.oracle and summary["sources"].get("model", 0) + summary["sources"].get("fallback", 0) != summary[
            "decisions"
        ]:
            problems.append(f"sources {summary['sources']} do not add up to {summary['decisions']} decisions")
        if not args.oracle and len(deciding) == 0:
            problems.append("no tick ran while the planner was deciding")
        if report["late_share_deciding"] >= 0.01 and not args.no_lateness_check:
            problems.append(f"{report['late_share_deciding']:.2%} of the ticks while deciding were late (limit 1%)")
        if not args.oracle:
            log = summary.get("episode_log")
            if not log or not Path(log).is_file():
                problems.append(f"no episode log ({log!r})")
            else:
                t = time.monotonic()
                replay = subprocess.run(["hearth", "replay", log], capture_output=True, text=True)
                report["replay"] = {"rc": replay.returncode, "s": round(time.monotonic() - t, 1)}
                if replay.returncode != 0:
                    problems.append(f"hearth replay failed: {(replay.stdout + replay.stderr).strip()[-500:]}")
    if args.render and (out / "qpos.json").exists():
        cmd = [sys.executable, str(HERE / "render.py"), str(out / "qpos.json"), "--png", str(out / "strip.png")]
        if args.video:
            cmd += ["--mp4", str(out / "episode.mp4")]
        r = subprocess.run(cmd, capture_output=True, text=True, env={"MUJOCO_GL": "egl", **os.environ})
        report["render"] = str(out / "strip.png") if r.returncode == 0 else f"failed: {r.stderr.strip()[-300:]}"
    report["problems"] = problems
    print(json.dumps(report))
    if args.check and problems:
        for m in problems:
            print(f"FAIL: {m}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
