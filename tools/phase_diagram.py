"""Write docs/phases.txt: the run's phases and where each may go, from runstate.TRANSITIONS.

Run: .venv/bin/python tools/phase_diagram.py (``make docs`` runs it; tests check the file)."""

from pathlib import Path

from modelslab_widget.runstate import diagram

TARGET = Path(__file__).resolve().parent.parent / "docs" / "phases.txt"

if __name__ == "__main__":
    TARGET.write_text(diagram(), encoding="utf-8")
    print(f"wrote {TARGET}")
