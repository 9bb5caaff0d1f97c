#!/usr/bin/env python
"""Transcription throughput on a local Ray instance with 1, 2, ... workers (one thread each).

    python tools/bench/ray_scaling.py --manifest recipes/speechocean762/data/test.jsonl \\
        [--limit 200] [--workers 1 2] [--model en-so762-blstm]

Each setting decodes the same utterances with the model's default decoding (beam and LM) and
prints the wall time (Ray start-up and model loading in the actors included) and the audio
decoded per second of wall time (= hours of audio per hour); the last column is the speed-up
over the first setting. Ray is started on 127.0.0.1 only, once per setting.
"""

from __future__ import annotations

import argparse
import os
import time

from speechrnn.data.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    import ray

    from speechrnn.distributed import ray_outcomes

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    entries = read_manifest(args.manifest)[: args.limit]
    audio_seconds = sum(e.duration for e in entries)
    print(f"{len(entries)} utterances, {audio_seconds / 60:.1f} min of audio")
    first = None
    for workers in args.workers:
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 log_to_driver=False, _node_ip_address="127.0.0.1")
        started = time.perf_counter()
        outcomes = list(ray_outcomes(entries, workers=workers, model=args.model))
        wall = time.perf_counter() - started
        ray.shutdown()
        assert len(outcomes) == len(entries)
        first = first or wall
        print(f"{workers} worker(s): {wall:6.1f} s, {audio_seconds / wall:6.1f}× real time "
              f"(hours of audio per hour), speed-up {first / wall:.2f}×")


if __name__ == "__main__":
    main()
