"""At-least-once to external systems across kill -9: a real process forwarding the durable
queue (REST to a tornado server, MQTT to mosquitto, Kafka to tansu, RabbitMQ) is killed with SIGKILL
in the middle; started again, it finishes. Every message arrived at least once (duplicates
counted and bounded), none is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tbpanel.rules.queue import RuleQueue
from tests.rules.helpers import msg
from tests.rules.recorder import Recorder
from tests.rules.test_external import MqttSink, kafka_read

N = 300
ROOT = Path(__file__).resolve().parents[2]


class RestTarget:
    node = "rest.TbRestApiCallNode"

    def __init__(self, tmp):
        self.rec = Recorder(delay_s=0.002).start()
        self.config = {"restEndpointUrlPattern": self.rec.url + "/in/$[n]"}

    def received(self):
        return [orjson.loads(b)["n"] for b in self.rec.bodies()]

    def close(self):
        self.rec.stop()


class MqttTarget:
    node = "mqtt.TbMqttNode"

    def __init__(self, tmp):
        from tests.rules.brokers import Mosquitto

        self.broker = Mosquitto(tmp).start()
        self.sink = MqttSink(self.broker.port)
        self.config = {"topicPattern": "tb/$[n]", "host": "127.0.0.1", "port": self.broker.port}

    def received(self):
        return [orjson.loads(p)["n"] for _, p in list(self.sink.got)]

    def close(self):
        self.sink.close()
        self.broker.stop()


class KafkaTarget:
    node = "kafka.TbKafkaNode"

    def __init__(self, tmp):
        from tests.rules.brokers import Tansu

        self.broker = Tansu(tmp).start()
        self.config = {"topicPattern": "out", "bootstrapServers": f"127.0.0.1:{self.broker.port}"}
        self._seen: list[int] = []

    def received(self):
        return [orjson.loads(r.value)["n"] for r in kafka_read(self.broker.port, "out", N + 10, timeout=2)]

    def close(self):
        self.broker.stop()


class RabbitTarget:
    node = "rabbitmq.TbRabbitMqNode"

    def __init__(self, tmp):
        from tests.rules.brokers import RabbitMQ
        from tests.rules.test_external import rabbit_declare

        d = tmp / "rabbit"
        d.mkdir()
        self.broker = RabbitMQ(d).start()
        rabbit_declare(self.broker.port, "out")
        self.config = {"routingKeyPattern": "out", "host": "127.0.0.1", "port": self.broker.port}
        self._seen: list[int] = []

    def received(self):
        from tests.rules.test_external import rabbit_read

        self._seen += [orjson.loads(m.body)["n"] for m in rabbit_read(self.broker.port, "out", N + 10, timeout=1)]
        return self._seen

    def close(self):
        self.broker.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "target_cls", [RestTarget, MqttTarget, KafkaTarget, RabbitTarget], ids=["rest", "mqtt", "kafka", "rabbitmq"]
)
def test_at_least_once_across_kill_9(tmp_path, target_cls):
    target = target_cls(tmp_path)
    try:
        q = RuleQueue(tmp_path)
        q.put([msg(data={"n": i}, originator=f"d{i % 4}") for i in range(N)])
        q.close()
        cmd = [sys.executable, "-m", "tests.rules.queue_child", str(tmp_path), target.node, json.dumps(target.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # kill once a third of the queue is gone (the queue file says what was acknowledged)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            probe = RuleQueue(tmp_path)
            left = probe.size()
            probe.close()
            if left <= N - N // 3:
                break
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        assert child.returncode == -signal.SIGKILL
        probe = RuleQueue(tmp_path)
        assert 0 < probe.size() < N  # killed mid-forward
        probe.close()
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err.decode()
        deadline = time.monotonic() + 20
        seen = target.received()
        while set(range(N)) - set(seen) and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = target.received()
        missing = set(range(N)) - set(seen)
        duplicates = len(seen) - len(set(seen))
        assert missing == set()
        assert duplicates <= 4  # at most the message in flight per originator at the kill
        q = RuleQueue(tmp_path)
        assert q.size() == 0 and q.dead_letters("t") == []
        q.close()
    finally:
        target.close()
