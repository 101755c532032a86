"""The hub's web side: JSON API, live push and the supervisor page."""
