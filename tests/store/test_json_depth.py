"""The JSON nesting limits the README states are the ones the payload parser applies.

The README's Limits table names two depths: a whole request body, and a telemetry or attribute
value that is itself JSON (kept as text). :func:`tbpanel.store.payload.loads` must accept a body
exactly as deep as stated and refuse one level more, with the same message, on both of its
paths: the orjson one and the stdlib re-read of bodies holding 19+-digit integers (which used to
stop near Python's recursion limit, ~990 levels, below the stated limit). A JSON value deeper
than its limit is refused with a message that says so (it used to be orjson's bare "Recursion
limit reached").
"""

from __future__ import annotations

import re
import threading

import pytest

from tbpanel.store.payload import MAX_JSON_DEPTH, PayloadError, loads, parse_attributes, parse_telemetry
from tbpanel.store.values import MAX_JSON_VALUE_DEPTH
from tests.helpers.server import ROOT


def readme_row() -> str:
    text = (ROOT / "README.md").read_text()
    return next(line for line in text.splitlines() if line.startswith("| JSON nesting"))


def readme_depths() -> list[int]:
    """The level counts the README's "JSON nesting" row states, in order (body first)."""
    return [int(n.replace(",", "")) for n in re.findall(r"≤\s*([\d,]+)\s*levels", readme_row())]


def nested(depth: int, leaf: str) -> bytes:
    """A flat telemetry object whose one value nests arrays: the body is ``depth`` levels deep."""
    return ('{"a": ' + "[" * (depth - 1) + leaf + "]" * (depth - 1) + "}").encode()


def test_readme_states_the_parsers_limits():
    depths = readme_depths()
    assert depths[0] == MAX_JSON_DEPTH, readme_row()
    assert MAX_JSON_VALUE_DEPTH in depths, f"the README does not state the JSON value limit: {readme_row()}"


@pytest.mark.parametrize("leaf", ["1", "123456789012345678901234"], ids=["orjson", "exact-integer re-read"])
def test_the_stated_body_depth_is_accepted_and_one_more_refused(leaf):
    depth = readme_depths()[0]
    loads(nested(depth, leaf))
    with pytest.raises(PayloadError, match=f"nested deeper than {depth} levels"):
        loads(nested(depth + 1, leaf))


def test_the_body_limit_holds_off_the_main_thread():
    """Transports parse on pool threads too."""
    out: list[object] = []

    def parse() -> None:
        out.append(loads(nested(MAX_JSON_DEPTH, "12345678901234567890123")))

    worker = threading.Thread(target=parse)
    worker.start()
    worker.join()
    assert out and isinstance(out[0], dict)


@pytest.mark.parametrize("parse", [parse_telemetry, parse_attributes])
def test_a_json_value_is_stored_up_to_its_limit(parse):
    value_depth = MAX_JSON_VALUE_DEPTH
    [(_, key, _, text)] = parse(nested(value_depth + 1, "1"), 0)
    assert key == "a" and text.startswith("[" * value_depth) and text.count("[") == value_depth
    with pytest.raises(PayloadError, match=f"nested deeper than {value_depth} levels"):
        parse(nested(value_depth + 2, "1"), 0)
