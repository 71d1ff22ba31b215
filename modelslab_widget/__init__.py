"""Watch ModelsLab workflow runs live in Jupyter.

>>> from modelslab_widget import watch
>>> watch("workflow-id", 12345)   # a live card: status, steps, timings, output thumbnails
"""

from __future__ import annotations

__version__ = "0.1.0"

from .client import WorkflowsClient
from .errors import (
    APIError,
    AuthenticationError,
    ModelsLabError,
    NotFoundError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    ValidationError,
)
from .models import RunSnapshot, Step, WorkflowInfo
from .widget import WorkflowRunWidget, watch

__all__ = [
    "APIError",
    "AuthenticationError",
    "ModelsLabError",
    "NotFoundError",
    "RateLimitError",
    "ResponseFormatError",
    "RunSnapshot",
    "ServerError",
    "Step",
    "ValidationError",
    "WorkflowInfo",
    "WorkflowRunWidget",
    "WorkflowsClient",
    "__version__",
    "watch",
]
