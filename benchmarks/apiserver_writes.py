"""Durable write cost of the embedded API server (`antrea.testbed.apiserver`, with a data dir).

    .venv/bin/python benchmarks/apiserver_writes.py [--sequential 300] [--writers 16] [--each 100]

Every write is answered only after the change log is fdatasync'ed (group commit), so this
times what a client waits for: sequential ConfigMap creates over HTTPS (p50/p99 latency), then
``--writers`` concurrent clients creating ``--each`` ConfigMaps (creates per second), and the
change-log syncs that carried them (batches, mean sync time). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from antrea.testbed.apiserver import persistence
from antrea.testbed.apiserver.server import APIServer

CM = "/api/v1/namespaces/default/configmaps"


def _count_syncs() -> dict[str, float]:
    stats = {"batches": 0.0, "sync_seconds": 0.0}
    write = persistence.Persistence._write

    def counted(self: persistence.Persistence, data: bytes) -> None:
        start = time.perf_counter()
        write(self, data)
        stats["batches"] += 1
        stats["sync_seconds"] += time.perf_counter() - start

    persistence.Persistence._write = counted  # type: ignore[method-assign]
    return stats


async def run(sequential: int, writers: int, each: int) -> dict[str, Any]:
    syncs = _count_syncs()
    with tempfile.TemporaryDirectory() as tmp:
        server = APIServer(port=0, data_dir=Path(tmp) / "data")
        await server.start()
        ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
        try:
            async with aiohttp.ClientSession(
                base_url=server.url,
                headers={"Authorization": f"Bearer {server.admin_token}"},
                connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
            ) as session:

                async def create(name: str) -> None:
                    body = {"metadata": {"name": name}, "data": {"k": "v"}}
                    async with session.post(CM, json=body) as resp:
                        assert resp.status == 201, await resp.text()

                latencies = []
                for i in range(sequential):
                    start = time.perf_counter()
                    await create(f"s{i}")
                    latencies.append(time.perf_counter() - start)
                latencies.sort()
                before = syncs["batches"]

                async def writer(w: int) -> None:
                    for i in range(each):
                        await create(f"c{w}-{i}")

                start = time.perf_counter()
                await asyncio.gather(*(writer(w) for w in range(writers)))
                elapsed = time.perf_counter() - start
        finally:
            await server.stop()
    concurrent_batches = syncs["batches"] - before
    return {
        "sequential_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "sequential_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "concurrent_creates_per_s": round(writers * each / elapsed),
        "concurrent_writes_per_sync": round(writers * each / max(1, concurrent_batches), 1),
        "mean_sync_ms": round(syncs["sync_seconds"] / max(1, syncs["batches"]) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--each", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.sequential, args.writers, args.each))))


if __name__ == "__main__":
    main()
