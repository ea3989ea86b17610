"""Fixtures shared by the API tests (the server itself is the session-wide ``world``)."""

from __future__ import annotations

import pytest
from tb_rest_client.rest_client import RestClient

from tests.helpers import ADMIN


@pytest.fixture
def rest(world):
    """tb-rest-client 4.4 signed in as tenant A's administrator."""
    client = RestClient(base_url=world.url)
    client.login(*ADMIN)
    yield client
    client.stop()
