"""The transport under the client: the session keeps honouring the proxy variables, read once
per host (requests reads them on every request), over a real loopback proxy."""

from __future__ import annotations

import warnings

import pytest

from modelslab_widget import WorkflowsClient
from modelslab_widget.simulator import DEMO_WORKFLOW_ID

from .loopback import CannedServer, json_answer

RUN = {"status": "success", "steps": [],
       "execution": {"id": 7, "workflow_id": "wf-1", "status": "running"}}
PROXIED_RUN = "http://modelslab.invalid/api/v1/workflows/wf-1/runs/7"


@pytest.fixture
def proxy():
    """A loopback server that answers as a forward proxy would, for one absolute URL."""
    server = CannedServer({("GET", PROXIED_RUN): json_answer(200, RUN)})
    yield server
    server.close()


def client_for(base_url: str, key: str = "sk-proxy-test") -> WorkflowsClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plain http on purpose: this proxy has no TLS
        return WorkflowsClient(key, base_url=base_url, retries=0)


def test_every_request_goes_through_the_proxy_the_environment_names(proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.origin)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with client_for("http://modelslab.invalid/api/v1") as client:
        for _ in range(3):
            assert client.get_run("wf-1", 7).status == "running"
    assert [(method, path) for method, path, _ in proxy.requests] == [("GET", PROXIED_RUN)] * 3


def test_a_host_in_no_proxy_is_reached_directly(proxy, monkeypatch, sim):
    monkeypatch.setenv("HTTP_PROXY", proxy.origin)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    eid = sim.add_run(steps=[("Text to Image", 60.0)])
    with client_for(sim.base_url, sim.api_key) as client:
        for _ in range(2):
            assert client.get_run(DEMO_WORKFLOW_ID, eid).status in ("pending", "running")
    assert proxy.requests == []
