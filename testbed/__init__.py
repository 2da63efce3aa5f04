"""lvs-testbed: an emulated lab for Linux Virtual Server layouts (see README.md)."""

from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the package runs from (installed editable): where the user-facing folders
``experiments/``, ``controllers/``, ``topos/`` and ``labs/`` live."""
