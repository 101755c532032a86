"""Barcode scanners: sources (serial, evdev), decoding, the scan workflow and worker feedback."""
