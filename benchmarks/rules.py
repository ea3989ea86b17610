"""Rule engine costs (issue 17).

  1. ingest CPU per point: the default root chain (message type switch → save time series)
     against hard-wired ingest (parse → validate → store), same messages, same store;
  2. a chain with one script filter and one script transform: messages/s (no storage);
  3. forwarding with acknowledgements: Kafka (tansu, acks=all) and RabbitMQ (publisher
     confirms), one message at a time as the queue worker sends them: messages/s.

Usage: .venv/bin/python benchmarks/rules.py [--messages 2000] [--keys 10] [--no-brokers]
Goal (issue 17): root-chain overhead ≤ 15 % CPU per point.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_query import machine  # noqa: E402
from report import write_report  # noqa: E402

from tbpanel.platform import Platform  # noqa: E402
from tbpanel.rules import RuleEngine, Services, default_root_chain, device_msg  # noqa: E402
from tbpanel.store import payload as tb_payload  # noqa: E402
from tbpanel.store.validate import payload_points  # noqa: E402
from tests.rules.helpers import chain, msg  # noqa: E402

T0 = 1_767_225_600_000


def ingest(n: int, keys: int, lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Platform(Path(tmp) / "data", compaction_interval_s=0)
        try:
            tenant = p.registry.create_tenant("B")
            devs = [p.registry.save_device(tenant.id, f"d{i}") for i in range(2)]
            engine = RuleEngine(Services(store=p.store, registry=p.registry))
            engine.set_chain(default_root_chain(tenant.id))
            data = [{f"k{j}": float(i + j) for j in range(keys)} for i in range(n)]

            def wired(dev, i):
                p.store.write_points(payload_points(dev.id, tb_payload.parse_telemetry(data[i], T0 + i)))

            def chained(dev, i):
                r = engine.process(
                    device_msg("POST_TELEMETRY_REQUEST", dev.id, data[i], tenant_id=tenant.id, ts=T0 + i)
                )
                assert r.ok

            results = {}
            for name, fn, dev in (("hard-wired", wired, devs[0]), ("root chain", chained, devs[1])):
                fn(dev, 0)
                c0, w0 = time.process_time(), time.perf_counter()
                for i in range(1, n):
                    fn(dev, i)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                results[name] = cpu / ((n - 1) * keys) * 1e6
                lines.append(f"| {name} | {results[name]:.1f} µs | {(n - 1) / wall:,.0f} |")
            over = results["root chain"] / results["hard-wired"] - 1
            lines.append(f"\nroot chain CPU overhead per point: {over:+.1%} (goal ≤ 15 %)")
            engine.close()
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
    print("\n".join(lines))
    write_report(args.out, "rules", lines)


if __name__ == "__main__":
    main()
