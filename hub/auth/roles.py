"""Roles, ordered: each includes the rights of the ones below it."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    """viewer reads; supervisor acts on stock, discrepancies and proposals; admin also runs devices and users."""

    VIEWER = 1
    SUPERVISOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role called `name` (case-insensitive); ValueError naming the choices otherwise."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; choose one of {', '.join(ROLES)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


ROLES = tuple(r.label for r in Role)
