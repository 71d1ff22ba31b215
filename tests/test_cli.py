"""The command line: the simulator serves real HTTP and prints how to reach it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from modelslab_widget import WorkflowsClient


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "modelslab_widget.simulator"],
        [sys.executable, "-m", "modelslab_widget.cli", "simulate"],
    ],
)
def test_simulate_prints_base_url_and_key_and_serves(command):
    process = subprocess.Popen(
        [*command, "--port", "0", "--api-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(3))
        with WorkflowsClient(lines["api_key"], base_url=lines["base_url"]) as client:
            assert client.get_workflow(lines["workflow_id"]).name
        assert lines["api_key"] == "cli-key"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
