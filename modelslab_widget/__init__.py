"""Watch ModelsLab workflow runs live in Jupyter.

>>> from modelslab_widget import watch
>>> watch("workflow-id", 12345)   # a live card: status, steps, timings, output thumbnails
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .client import WorkflowsClient
from .errors import (
    APIError,
    AuthenticationError,
    MissingKeyError,
    ModelsLabError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    ValidationError,
)
from .models import RunSnapshot, Step, WorkflowInfo, WorkflowSummary

# The widgets load ipywidgets (and IPython); the client, the CLI and the simulator do not
# need them, so they are imported on first use.
_LAZY = {
    "WorkflowRunWidget": "widget",
    "watch": "widget",
    "WorkflowLauncher": "launcher",
    "RunBoard": "board",
    "Sweep": "sweep",  # no widgets, but the whole client: loaded when first used
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelslab_widget' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

if TYPE_CHECKING:
    from .board import RunBoard
    from .launcher import WorkflowLauncher
    from .sweep import Sweep
    from .widget import WorkflowRunWidget, watch

__all__ = [
    "APIError",
    "AuthenticationError",
    "MissingKeyError",
    "ModelsLabError",
    "NotFoundError",
    "QueueFullError",
    "RateLimitError",
    "ResponseFormatError",
    "RunBoard",
    "RunSnapshot",
    "ServerError",
    "Step",
    "Sweep",
    "ValidationError",
    "WorkflowInfo",
    "WorkflowLauncher",
    "WorkflowRunWidget",
    "WorkflowSummary",
    "WorkflowsClient",
    "__version__",
    "watch",
]
