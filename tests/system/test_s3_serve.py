"""``tbpanel serve --cold-url s3://… --cold-option …`` end to end against a real S3 API
(``moto_server``, a child process): device uploads into a closed month, the background
compaction moving it to S3, REST queries answering from there with a few GETs, a range delete
rewriting the month on S3, a SIGKILL and a restart, and the secret never in the server's output."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tbpanel.entities import registry
from tests.helpers.moto import MotoS3, count
from tests.helpers.server import ADMIN, Api, ServerProcess

JAN = 1_704_067_200_000  # 2024-01-01: long closed, so the background compactor moves it
HOUR = 3_600_000


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


def wait_for(what, predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_serve_keeps_closed_months_on_s3(tmp_path, s3):
    data = tmp_path / "data"
    registry.init(str(data), ADMIN[0], ADMIN[1], "Tenant A")  # what `tbpanel init` does, without a process
    bucket = s3.bucket()
    root = f"{bucket}/fleet/cold"
    args = (
        "--cold-url",
        f"s3://{root}",
        "--cold-option",
        f"endpoint_url={s3.endpoint}",
        "--cold-option",
        f"key={s3.key}",
        "--cold-option",
        f"secret={s3.secret}",
        "--compaction-interval",
        "0.2",
    )
    fs = s3.filesystem()

    def live() -> dict[str, int]:
        """The manifest: which generation of each month the server switched to."""
        con = sqlite3.connect(f"file:{data / 'telemetry' / 'telemetry.sqlite'}?mode=ro", uri=True)
        try:
            return dict(con.execute("SELECT name, generation FROM cold_partitions"))
        finally:
            con.close()

    def generations() -> list[str]:
        """``month/gNNNNNN`` of every object under the cold root (its marker left out)."""
        rels = [p[len(root) + 1 :].split("/") for p in fs.find(root)]
        return sorted({f"{r[0]}/{r[1]}" for r in rels if len(r) >= 3})

    server = ServerProcess(data, args).start()
    outputs = []
    try:
        admin = Api.login(server.url, *ADMIN)
        did = admin.post("/api/device", json={"name": "s3-pump", "type": "pump"}).json()["id"]["id"]
        token = admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]
        sent = [{"ts": JAN + i * HOUR, "values": {"temp": i + 0.5, "runs": i}} for i in range(600)]
        for i in range(0, len(sent), 100):
            assert (
                admin.session.post(f"{server.url}/api/v1/{token}/telemetry", json=sent[i : i + 100]).status_code == 200
            )
        wait_for("the month on S3", lambda: live() == {"2024-01": 1})
        assert generations() == ["2024-01/g000001"]

        values = f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries"
        window = dict(keys="temp,runs", startTs=JAN, endTs=JAN + 31 * 24 * HOUR, limit=100_000, orderBy="ASC")

        def history() -> dict:
            r = admin.get(values, params=window)
            assert r.status_code == 200, r.text
            return {k: [(p["ts"], p["value"]) for p in v] for k, v in r.json().items()}

        expect = {
            "temp": [(p["ts"], str(p["values"]["temp"])) for p in sent],
            "runs": [(p["ts"], str(p["values"]["runs"])) for p in sent],
        }
        mark = len(s3.requests())
        assert history() == expect  # from S3: the hot rows were deleted by the switch
        asked = count(s3.requests_since(mark))
        # the generation's zarr.json, series, offsets and one chunk of each column read; a HEAD
        assert set(asked) <= {"GET", "HEAD"} and asked["GET"] <= 7 and asked.get("HEAD", 0) <= 1, asked

        delete = f"/api/plugins/telemetry/DEVICE/{did}/timeseries/delete"
        r = admin.delete(delete, params=dict(keys="temp", startTs=JAN + 100 * HOUR, endTs=JAN + 200 * HOUR))
        assert r.status_code == 200, r.text
        expect["temp"] = [p for p in expect["temp"] if not JAN + 100 * HOUR <= p[0] < JAN + 200 * HOUR]
        assert history() == expect  # a tombstone hides the cold points at once
        wait_for("the month rewritten", lambda: live() == {"2024-01": 2} and generations() == ["2024-01/g000002"])
        assert history() == expect

        server.kill()  # SIGKILL
        outputs += server.output
        server = ServerProcess(data, args).start()
        admin = Api.login(server.url, *ADMIN)
        assert history() == expect
        r = admin.get(values, params=dict(window, keys="runs", agg="COUNT", interval=31 * 24 * HOUR))
        assert [p["value"] for p in r.json()["runs"]] == ["600"]  # no point twice
    finally:
        server.stop()
        outputs += server.output
    text = "".join(outputs)
    assert "tbpanel serving at" in text
    assert s3.secret not in text  # nor in any log line


def test_cold_options_are_typed_and_their_secrets_never_shown(capsys):
    from tbpanel.cli import build_parser, main
    from tbpanel.store.object_store import StorageOptions

    args = build_parser().parse_args(
        ["serve", "--cold-url", "s3://b/x"]
        + ["--cold-option", "secret=s3cr3t-value", "--cold-option", "anon=false", "--cold-option", "key=123"]
        + ["--cold-option", 'client_kwargs={"region_name": "eu-west-1"}', "--cold-option", 'token="42"']
    )
    options = dict(args.cold_option)
    assert options == {
        "secret": "s3cr3t-value",
        "anon": False,
        "key": 123,  # JSON, as the help says ('"123"' keeps it a string, like token)
        "client_kwargs": {"region_name": "eu-west-1"},
        "token": "42",
    }
    shown = repr(StorageOptions({**options, "endpoint_url": "http://127.0.0.1:9000"}))
    assert "s3cr3t" not in shown and "42" not in shown and "http://127.0.0.1:9000" in shown
    assert main(["serve", "--cold-option", "secret=s3cr3t-value"]) == 2  # options without a URL
    assert "give --cold-url too" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--cold-url", "s3://b/x", "--cold-option", "secret={s3cr3t}"])
    assert "s3cr3t" not in capsys.readouterr().err  # a malformed value is not echoed
