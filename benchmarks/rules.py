"""Rule engine costs (issue 17).

  1. ingest CPU per point through the ingress the transports call (parse → validate → route):
     hard-wired (the store directly), the default root chain (run compiled: the direct path),
     and a custom root chain doing the same work (switch → save) through the durable queue;
  2. a chain with one script filter and one script transform: messages/s (no storage);
  3. forwarding with acknowledgements: Kafka (tansu, acks=all) and RabbitMQ (publisher
     confirms), one message at a time as the queue worker sends them: messages/s.

Usage: .venv/bin/python benchmarks/rules.py [--messages 2000] [--keys 10] [--no-brokers]
Goal (issue 17): default root-chain overhead ≤ 15 % CPU per point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import orjson  # noqa: E402
from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.platform import Platform  # noqa: E402
from tbpanel.rules import RuleEngine, Services, default_root_json, import_chain  # noqa: E402
from tbpanel.store.limits import telemetry_points  # noqa: E402
from tests.rules.helpers import chain, msg  # noqa: E402

T0 = 1_767_225_600_000


def ingest(n: int, keys: int, lines: list[str]) -> None:
    """CPU per point of every thread (the loop, the store's writer, the queue's worker) for
    the transports' path after parsing: the store directly (hard-wired, what tbpanel did
    before the rule engine), the ingress with the default root chain (compiled), and the
    ingress with a root chain that does the same work (switch → save time series) through the
    durable queue and its worker. One message per commit: each is awaited before the next."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Platform(Path(tmp) / "data", compaction_interval_s=0)
        try:
            plain = p.registry.create_tenant("default chain")
            custom = p.registry.create_tenant("custom chain")
            doc = default_root_json()
            doc["metadata"]["connections"] = [c for c in doc["metadata"]["connections"] if c["toIndex"] == 0]
            doc["ruleChain"]["name"] = "switch → save"
            p.rules.chains.save(import_chain(doc, tenant_id=custom.id))
            p.rules.start()
            devs = {
                "hard-wired": p.registry.save_device(plain.id, "wired"),
                "default root chain (compiled)": p.registry.save_device(plain.id, "compiled"),
                "custom root chain (queued)": p.registry.save_device(custom.id, "queued"),
            }
            bodies = {i: orjson.dumps({f"k{j}": float(i + j) for j in range(keys)}) for i in range(-50, n)}
            ingress = p.rules.ingress

            async def run(name: str, dev, first: int, last: int) -> None:
                for i in range(first, last):
                    rows = telemetry_points(dev.id, bodies[i], T0 + i, None)
                    if name == "hard-wired":
                        await p.store.submit_async(rows)
                    else:
                        await ingress.telemetry(dev.tenant_id, rows)

            for name, dev in devs.items():
                asyncio.run(run(name, dev, -50, 0))  # warm-up (the plan, scripts, caches)
            while p.rules.queue.size():
                time.sleep(0.01)
            # interleaved rounds, the order rotated, the median per path: the machine is shared
            rounds, chunk = 7, max(1, n // 7)
            cpu: dict[str, list[float]] = {name: [] for name in devs}
            rate: dict[str, list[float]] = {name: [] for name in devs}
            names = list(devs)
            for r in range(rounds):
                for name in names[r % 3 :] + names[: r % 3]:
                    c0, w0 = time.process_time(), time.perf_counter()
                    asyncio.run(run(name, devs[name], r * chunk, (r + 1) * chunk))
                    while p.rules.queue.size():  # the queued route's work ends when the worker is done
                        time.sleep(0.001)
                    cpu[name].append((time.process_time() - c0) / (chunk * keys) * 1e6)
                    rate[name].append(chunk / (time.perf_counter() - w0))
            last = float(rounds * chunk - 1)
            results = {}
            for name, dev in devs.items():
                assert p.store.latest(dev.id, ["k0"])["k0"][2] == last, name  # everything stored
                results[name] = statistics.median(cpu[name])
                lines.append(f"| {name} | {results[name]:.1f} µs | {statistics.median(rate[name]):,.0f} |")
            for name in list(devs)[1:]:
                over = results[name] / results["hard-wired"] - 1
                goal = " (goal ≤ 15 %)" if "compiled" in name else " (the same work through the durable queue)"
                lines.append(f"\n{name}: CPU per point {over:+.1%} against hard-wired{goal}")
        finally:
            p.close()


def scripts(n: int, lines: list[str]) -> None:
    engine = RuleEngine(Services())
    engine.set_chain(
        chain(
            "t",
            [
                ("filter.TbJsFilterNode", "hot?", {"jsScript": "return msg.temperature > 20;"}),
                (
                    "transform.TbTransformMsgNode",
                    "to C",
                    {
                        "jsScript": "msg.c = (msg.temperature - 32) / 1.8; return {msg: msg, metadata: metadata, msgType: msgType};"
                    },
                ),
            ],
            [(0, 1, "True")],
            debug=False,
        )
    )
    msgs = [msg(data={"temperature": 10 + i % 30}) for i in range(n)]
    engine.process(msgs[0])
    w0 = time.perf_counter()
    for m in msgs:
        engine.process(m)
    wall = time.perf_counter() - w0
    lines.append(f"\nscript filter + script transform: {n / wall:,.0f} messages/s ({wall / n * 1e6:.0f} µs each)")
    engine.close()


def forwarding(n: int, lines: list[str]) -> None:
    from tests.rules.brokers import RabbitMQ, Tansu
    from tests.rules.test_external import rabbit_declare

    with tempfile.TemporaryDirectory() as tmp:
        for name, cls, node, cfg in (
            (
                "Kafka (tansu, acks=all)",
                Tansu,
                "kafka.TbKafkaNode",
                lambda b: {"topicPattern": "bench", "bootstrapServers": f"127.0.0.1:{b.port}", "acks": "all"},
            ),
            (
                "RabbitMQ (publisher confirms)",
                RabbitMQ,
                "rabbitmq.TbRabbitMqNode",
                lambda b: {"routingKeyPattern": "bench", "host": "127.0.0.1", "port": b.port},
            ),
        ):
            d = Path(tmp) / cls.__name__
            d.mkdir()
            broker = cls(d).start()
            try:
                if cls is RabbitMQ:
                    rabbit_declare(broker.port, "bench")
                engine = RuleEngine(Services())
                engine.set_chain(chain("t", [(node, "out", cfg(broker))], [], debug=False))
                assert engine.process(msg(data={"n": -1})).ok
                w0 = time.perf_counter()
                for i in range(n):
                    assert engine.process(msg(data={"n": i})).ok
                wall = time.perf_counter() - w0
                lines.append(f"| {name} | {n / wall:,.0f} |")
                engine.close()
            finally:
                broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--no-brokers", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    lines = [
        f"# Rule engine benchmark\n\n{machine()}\n",
        f"{args.messages} messages × {args.keys} keys, one message per commit\n",
    ]
    lines += ["| ingest path | CPU per point | messages/s |", "|---|---|---|"]
    ingest(args.messages, args.keys, lines)
    scripts(args.messages * 5, lines)
    if not args.no_brokers:
        lines += ["\n| forwarding, one at a time with acks | messages/s |", "|---|---|"]
        forwarding(args.messages, lines)
    lines.append("\ncommand: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print("\n".join(lines))
    write_report(args.out, "rules", lines)


if __name__ == "__main__":
    main()
