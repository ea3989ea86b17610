"""What ``import tbpanel`` offers, and querying the store by device name."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tbpanel
from tbpanel.platform import Platform
from tbpanel.store import open_store
from tbpanel.store.values import ValueType

PUBLIC = {"__version__", "open_store", "connect", "ModelConfig", "open_demo"}
T0 = 1_790_000_000_000


def test_all_is_exactly_the_public_names_and_each_resolves():
    assert set(tbpanel.__all__) == PUBLIC
    for name in tbpanel.__all__:
        assert getattr(tbpanel, name) is not None


def test_the_namespace_holds_no_typing_helpers():
    public = {n for n in dir(tbpanel) if not n.startswith("_")}
    assert public == PUBLIC - {"__version__"}
    assert not hasattr(tbpanel, "Any") and not hasattr(tbpanel, "annotations")


def test_star_import_gives_only_the_public_names():
    code = "from tbpanel import *; print(sorted(k for k in dir() if not k.startswith('_')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == sorted(PUBLIC - {"__version__"})


@pytest.fixture
def platform(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = p.registry.create_tenant("T")
    pump = p.registry.save_device(tenant.id, "Pump P1", type="pump")
    p.registry.save_device(tenant.id, "Quiet one", type="pump")  # no data yet
    p.store.write_points([(pump.id, "vibration", T0 + i * 60_000, int(ValueType.DOUBLE), float(i)) for i in range(10)])
    yield p
    p.close()


def test_the_platform_store_accepts_device_names(platform):
    pump = platform.registry.find_device(platform.registry.find_tenant("T").id, "Pump P1")
    by_name = platform.store.query(devices=["Pump P1"], keys=["vibration"], start=T0, end=T0 + 3_600_000)
    by_id = platform.store.query(devices=[pump.id], keys=["vibration"], start=T0, end=T0 + 3_600_000)
    assert list(by_name["device"].values) == ["Pump P1"]  # the axis keeps what was asked
    assert list(by_id["device"].values) == [pump.id]
    assert by_name["vibration"].values.tolist() == by_id["vibration"].values.tolist()
    assert by_name["vibration"].notnull().sum() == 10


def test_a_known_device_without_data_is_an_empty_row_not_an_error(platform):
    ds = platform.store.query(devices=["Pump P1", "Quiet one"], keys=["vibration"], start=T0, end=T0 + 3_600_000)
    assert list(ds["device"].values) == ["Pump P1", "Quiet one"]
    assert ds["vibration"].sel(device="Quiet one").notnull().sum() == 0


def test_an_unknown_device_name_is_a_clear_error(platform):
    with pytest.raises(KeyError, match="unknown device 'Pump P9': neither a device id nor a device name"):
        platform.store.query(devices=["Pump P1", "Pump P9"], keys=["vibration"])


def test_a_name_used_by_two_tenants_must_be_given_by_id(platform):
    other = platform.registry.create_tenant("U")
    platform.registry.save_device(other.id, "Pump P1", type="pump")
    with pytest.raises(KeyError, match="used by 2 tenants"):
        platform.store.query(devices=["Pump P1"], keys=["vibration"])


def test_a_bare_store_names_the_device_it_does_not_know(tmp_path):
    with open_store(tmp_path / "s", compaction_interval_s=0) as store:
        store.write("my-device", {"temperature": 21.5}, ts=T0)
        assert store.query(devices=["my-device"], keys=["temperature"])["temperature"].values.tolist() == [[21.5]]
        with pytest.raises(KeyError, match=r"unknown device 'Pump P1'.*tbpanel\.connect"):
            store.query(devices=["Pump P1"])
