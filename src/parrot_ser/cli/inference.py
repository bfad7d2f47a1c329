"""`parrot-ser export` and `parrot-ser predict` (placeholders until implemented)."""

from parrot_ser.errors import ParrotError


def export() -> None:
    raise ParrotError("export is not available yet")


def predict() -> None:
    raise ParrotError("predict is not available yet")
