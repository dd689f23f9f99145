"""flowscope-cli: the ``flow-summary`` and ``flow-replay`` commands."""

__version__ = "0.1.0"
