"""`parrot-ser extract` (placeholder until implemented)."""

from parrot_ser.errors import ParrotError


def extract() -> None:
    raise ParrotError("extract is not available yet")
