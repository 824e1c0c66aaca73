"""What the stream's hardening costs: latency and drain of this tree against an earlier commit, alternating.

Usage:
    .venv/bin/python bench/bench_hardening_cost.py [--base e0ae3cd] [--pairs 2] [--rate 1000] [--seconds 20] \\
        [--input-partitions 1] [--json out.json]

Each pair runs ``bench/bench_streaming.py`` (NTM only, ``processing_time`` 100 ms, the
given rate and input partitions, plus a drain of ``--drain-docs``) once in a git worktree
of ``--base`` (the code before the change) and once in a worktree of ``--head``, alternating, against
one shared Kafka broker, so both see the same machine load. It prints p50/p99 latency
and drain docs/s for each run, and the ratio of the medians (this tree / base).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worktree(commit: str) -> Path:
    """A worktree of ``commit`` under ``.ntm/bench/worktrees`` (created once)."""
    path = ROOT / ".ntm" / "bench" / "worktrees" / commit
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def run_once(tree: Path, args: argparse.Namespace, bootstrap: str, out: Path) -> dict:
    cmd = [
        sys.executable, str(tree / "bench" / "bench_streaming.py"), "--bootstrap", bootstrap,
        "--rates", str(args.rate), "--seconds", str(args.seconds), "--warmup-seconds", "5", "--warmup-run-seconds", "10",
        "--triggers", "processing_time:100 milliseconds", "--kinds", "ntm", "--drain-docs", str(args.drain_docs),
        "--backfill-scales", "--input-partitions", str(args.input_partitions), "--work", str(out.parent / "work"),
        "--json", str(out),
    ]  # fmt: skip
    # Both trees use this checkout's jars and WordNet (the base tree has no .ntm of its own).
    from ntm_spark.spark.corpus import locate_20newsgroups

    env = {
        **os.environ, "NTM_HOME": str(ROOT / ".ntm"), "PYTHONPATH": str(tree), "SPARK_LOCAL_IP": "127.0.0.1",
        "NTM_20NG": str(locate_20newsgroups(download=False)),
    }  # fmt: skip
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    lat = data["latency"][0]
    drain = data["drain"][0] if data["drain"] else {}
    return {"p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"), "drain_docs_per_s": drain.get("docs_per_s_sustained")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="e0ae3cd", help="the commit before the change")
    parser.add_argument("--head", default="HEAD", help="the commit with the change (run from its own worktree too)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--drain-docs", type=int, default=10000)
    parser.add_argument("--input-partitions", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from ntm_spark.core.config import load_config
    from ntm_spark.tools.services import KafkaBroker, free_port

    work = ROOT / ".ntm" / "bench" / "hardening"
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}"])
    broker = KafkaBroker(cfg, workdir=work / "kafka")
    broker.up()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.head], capture_output=True, text=True, check=True).stdout.strip()
    trees = {"base": worktree(args.base), "this": worktree(head)}
    runs: dict = {"base": [], "this": []}
    try:
        for i in range(args.pairs):
            for name in ("base", "this") if i % 2 == 0 else ("this", "base"):
                r = run_once(trees[name], args, broker.bootstrap_servers, work / f"{name}-{i}.json")
                runs[name].append(r)
                print(json.dumps({"tree": name, "pair": i, **r}), flush=True)
    finally:
        broker.down()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name] if r[key] is not None)

    summary = {
        "base": args.base, "head": head, "rate": args.rate, "input_partitions": args.input_partitions, "pairs": args.pairs,
        "machine": f"{os.cpu_count()} cores", "runs": runs,
        "ratio_this_over_base": {k: med("this", k) / med("base", k) for k in ("p50_ms", "p99_ms", "drain_docs_per_s")},
    }  # fmt: skip
    print(json.dumps(summary["ratio_this_over_base"]))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
