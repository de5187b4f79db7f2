"""Fixtures of the ``pasa serve`` tests: app clients over a scripted demo agent."""

from __future__ import annotations

import pytest

from tests.pasa.serve.helpers import scripted_agent


@pytest.fixture
def make_client(tmp_path):
    """``make_client(agent=None, api_key=None, **queue_kwargs)`` -> a started ``TestClient`` over a fresh app on
    ``tmp_path/"out"`` (clients are closed at the end of the test)."""
    from fastapi.testclient import TestClient

    from pasa.serve.app import create_app
    from pasa.serve.jobs import SearchQueue

    clients = []

    def make(agent=None, api_key=None, output_dir=None, **queue_kwargs):
        queue = SearchQueue(agent or scripted_agent(), str(output_dir or tmp_path / "out"), **queue_kwargs)
        client = TestClient(create_app(queue, api_key, {"demo": True}))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
