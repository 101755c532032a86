"""Edge agent: reads scanners and load-cell shelves on a Raspberry Pi and publishes events."""

__version__ = "0.1.0"
