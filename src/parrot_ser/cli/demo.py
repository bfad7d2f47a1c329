"""`parrot-ser demo` (placeholder until implemented)."""

from parrot_ser.errors import ParrotError


def demo() -> None:
    raise ParrotError("demo is not available yet")
