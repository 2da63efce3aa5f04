"""lvs-testbed: an emulated lab for Linux Virtual Server layouts (see README.md)."""

__version__ = "0.1.0"
