#!/usr/bin/env python
"""Requests per second and latency of `zoo serve` on the loopback.

Starts the real server (a subprocess) for each model and batch size, sends a fixed number of
requests (real test images as PNG, multipart) from concurrent clients, and reports requests/s
and p50/p99 latency. Every request goes to 127.0.0.1 only and the loop is bounded.

    python scripts/benchmarks/serve_load.py                                  # lenet and resnet18, batch 1 and 16
    python scripts/benchmarks/serve_load.py --models lenet --requests 200 --clients 4

Writes results/serve-load.json and prints the README's table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from zoo.data.fashion_mnist import load_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, batch: int, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", model, "--port", str(port), "--max-batch-size", str(batch)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"zoo serve {model} exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"zoo serve {model} was not healthy after 120 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def measure(url: str, pngs: list[bytes], requests: int, clients: int) -> dict:
    def one(i: int) -> float:
        with httpx.Client(timeout=60) as client:  # a connection per request: what independent clients do
            t = time.perf_counter()
            r = client.post(url, files={"image": ("x.png", pngs[i % len(pngs)], "image/png")})
            r.raise_for_status()
            return time.perf_counter() - t

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(min(20, requests))))  # warm-up
        start = time.perf_counter()
        latencies = sorted(pool.map(one, range(requests)))
        wall = time.perf_counter() - start
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": requests, "clients": clients, "rps": round(requests / wall, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1), "p99_ms": round(pct(0.99), 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="lenet,resnet18")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "results" / "serve-load.json"))
    args = ap.parse_args()

    images = load_fashion_mnist()["test_images"][:64]
    pngs = []
    for x in images:
        buf = io.BytesIO()
        Image.fromarray(x.numpy()).save(buf, "PNG")
        pngs.append(buf.getvalue())
    rows = []
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            port = free_port()
            proc = start(model, batch, port)
            try:
                row = {"model": model, "max_batch_size": batch, **measure(f"http://127.0.0.1:{port}/predict", pngs, args.requests, args.clients)}
            finally:
                stop(proc)
            rows.append(row)
            print(f"{model} max-batch-size {batch}: {row['rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "rows": rows, "command": "python scripts/benchmarks/serve_load.py " + " ".join(sys.argv[1:])}, indent=2) + "\n")
    print(f"\n{args.requests} requests from {args.clients} concurrent clients, 28x28 PNG test images, on {machine}:\n")
    print("| model | --max-batch-size | requests/s | p50 | p99 |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['model']}` | {r['max_batch_size']} | {r['rps']} | {r['p50_ms']} ms | {r['p99_ms']} ms |")


if __name__ == "__main__":
    main()
