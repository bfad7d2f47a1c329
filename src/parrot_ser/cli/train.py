"""`parrot-ser train` and `parrot-ser grid` (placeholders until implemented)."""

from parrot_ser.errors import ParrotError


def train() -> None:
    raise ParrotError("train is not available yet")


def grid() -> None:
    raise ParrotError("grid is not available yet")
