"""Rule engine fixtures: a real platform (entities, telemetry, alarms on SQLite files), a
tenant with a thermostat, and an engine whose clock the test sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tbpanel.platform import Platform
from tbpanel.rules import RuleEngine, Services

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_767_225_600_000


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def platform(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    yield p
    p.close()


@pytest.fixture
def tenant(platform):
    return platform.registry.create_tenant("T")


@pytest.fixture
def device(platform, tenant):
    return platform.registry.save_device(tenant.id, "thermostat-1", type="thermostat")


@pytest.fixture
def engine(platform, clock):
    e = RuleEngine(Services(store=platform.store, registry=platform.registry, alarms=platform.alarms, clock=clock))
    yield e
    e.close()


@pytest.fixture
def bare_engine(clock):
    """An engine without storage, for nodes that need none."""
    e = RuleEngine(Services(clock=clock))
    yield e
    e.close()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    from tests.rules.brokers import Mosquitto

    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory):
    from tests.rules.brokers import Tansu

    b = Tansu(tmp_path_factory.mktemp("tansu")).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory):
    """One RabbitMQ node for the session (it takes 10-20 s to start)."""
    from tests.rules.brokers import RABBIT, RabbitMQ

    if not os.path.exists(RABBIT):
        pytest.fail("the RabbitMQ tests need Debian's rabbitmq-server (.ci/run installs it)")
    b = RabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    yield b
    b.stop()
