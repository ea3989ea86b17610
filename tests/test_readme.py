"""README.md's Python code blocks run as written, in order, next to a demo data directory.

The README's snippets open ``.demo-data`` (what ``make demo`` creates); the test makes a demo
directory with :func:`tbpanel.demo.open_demo` (its fixed end, so the README's dates hold), works
in a temporary copy of it and executes every fenced ``python`` block of README.md in one
namespace, as a reader pasting them into one notebook would.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tbpanel.demo import open_demo
from tests.helpers.server import ROOT

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme-demo") / ".demo-data"
    open_demo(path).close()
    return path


def test_readme_has_python_blocks():
    blocks = readme_blocks()
    assert len(blocks) >= 2
    assert not any(".plot()" in b for b in blocks)  # matplotlib is not installed: hvplot is


def test_every_readme_python_block_runs(demo_dir, tmp_path, monkeypatch):
    shutil.copytree(demo_dir, tmp_path / ".demo-data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    try:
        for i, block in enumerate(readme_blocks()):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    finally:
        for name in ("store", "tb"):  # what the blocks open
            close = getattr(namespace.get(name), "close", None)
            if close is not None:
                close()
    ds = namespace["ds"]  # the name query of the README found the demo's pumps
    assert list(ds["device"].values) == ["Pump P1", "Pump P2"]
    assert ds["vibration"].notnull().sum() > 0
