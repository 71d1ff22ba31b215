"""A local ModelsLab Workflows API over real HTTP, for the demo notebook, tests and benchmarks.

Runs are scripted in real time (queue, then each step for its duration), so a client watching
them sees the same sequence of answers it would see against modelslab.com. Faults (5xx, 429,
garbage bodies, slow or dropped connections, broken images) can be injected per request so the
client's error handling is exercised over a real socket, not through mocks.

One module per concern: `faults` (what a test injects), `media` (output files of every kind),
`runs` (workflows, scripted runs, answer bodies), `answers` (HTTP answers as values),
`server` (sockets and the handler), `core` (the Simulator), `cli` (the command).
Only the standard library is imported at module level; Pillow is imported where images are made.
"""

from __future__ import annotations

from .cli import main
from .core import RATE_LIMIT_WINDOW, Simulator
from .faults import Fault
from .media import OUTPUT_TYPES, decompression_bomb_png, render_image
from .runs import (
    DEFAULT_PARAMETERS,
    DEFAULT_STEPS,
    DEMO_MEDIA_WORKFLOW_ID,
    DEMO_WORKFLOW_ID,
    StepSpec,
)

__all__ = [
    "DEFAULT_PARAMETERS",
    "DEFAULT_STEPS",
    "DEMO_MEDIA_WORKFLOW_ID",
    "DEMO_WORKFLOW_ID",
    "OUTPUT_TYPES",
    "RATE_LIMIT_WINDOW",
    "Fault",
    "Simulator",
    "StepSpec",
    "decompression_bomb_png",
    "main",
    "render_image",
]
