"""`python -m modelslab_widget.simulator`: serve a simulator until Ctrl-C."""

from .cli import main

raise SystemExit(main())
