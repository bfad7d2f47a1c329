"""`parrot-ser serve` (placeholder until implemented)."""

from parrot_ser.errors import ParrotError


def serve() -> None:
    raise ParrotError("serve is not available yet")
