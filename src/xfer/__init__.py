"""xfer: move files and text between devices through a relay with rooms."""

__version__ = "0.1.0"
