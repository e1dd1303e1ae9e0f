#!/usr/bin/env python3
"""Aggregate generation speed of `hearth serve` with N concurrent streaming clients (the official `openai` client).

    python3 scripts/bench-serve.py [--model smollm2-135m] [--streams 1,16] [--tokens 64] [--threads 2] [--reps 3]

Starts `target/release/hearth serve MODEL` on a free port (or uses --url), then for each N runs N chat completions
at once (streamed, greedy, `max_tokens` each, a different question per stream, usage reported by the server) and
prints per N: completion tokens over wall time (aggregate tok/s), the gain against the first N, and the CPU seconds
the server and this client each used, since on a small machine the client's own CPU comes out of the engine's share.
Compare against `hearth bench MODEL --parallel N` (the engine alone, no HTTP, no client).
"""

import argparse
import concurrent.futures as cf
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

from openai import OpenAI

TOPICS = [
    "the sea", "a lighthouse", "bread", "a fox", "winter", "a clock", "a robot arm", "a garden",
    "the moon", "a violin", "a bridge", "rain", "a library", "a mountain", "a train", "a candle",
    "a desert", "a kite", "an owl", "a river", "a market", "snow", "a ship", "a forest",
    "a city at night", "a cat", "a bicycle", "a storm", "a teapot", "a map", "a key", "a door",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_stream(client, model, i, tokens):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}."}],
        max_tokens=tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    n = 0
    for chunk in stream:
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--url", help="an already running server (no server CPU figures then)")
    ap.add_argument("--hearth", default="target/release/hearth")
    a = ap.parse_args()

    server = None
    url = a.url
    if url is None:
        port = free_port()
        server = subprocess.Popen(
            [a.hearth, "serve", a.model, "--port", str(port), "-t", str(a.threads)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except Exception:
                if server.poll() is not None:
                    sys.exit(f"hearth serve exited with {server.returncode}")
                time.sleep(0.1)
    client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    try:
        one_stream(client, a.model, 0, 4)  # loads the model, warms up
        print("| streams | tokens | wall s | aggregate tok/s | vs first | server CPU s | client CPU s |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        base = None
        for n in [int(x) for x in a.streams.split(",")]:
            rates, walls, toks, srv, cli = [], [], [], [], []
            for _ in range(a.reps):
                s0 = cpu_seconds(server.pid) if server else 0.0
                c0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                with cf.ThreadPoolExecutor(n) as ex:
                    counts = list(ex.map(lambda i: one_stream(client, a.model, i, a.tokens), range(n)))
                wall = time.perf_counter() - t0
                c1 = resource.getrusage(resource.RUSAGE_SELF)
                srv.append((cpu_seconds(server.pid) - s0) if server else 0.0)
                cli.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
                walls.append(wall)
                toks.append(sum(counts))
                rates.append(sum(counts) / wall)
            rate = sum(rates) / len(rates)
            base = base or rate
            print(
                f"| {n} | {sum(toks) // len(toks)} | {sum(walls) / len(walls):.2f} | {rate:.1f} | "
                f"{rate / base:.2f}x | {sum(srv) / len(srv):.2f} | {sum(cli) / len(cli):.2f} |"
            )
    finally:
        if server:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
