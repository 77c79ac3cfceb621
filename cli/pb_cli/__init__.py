"""pb: the platform's command-line tool (see cli/README.md)."""

__version__ = "0.1.0"
