"""Fixtures of the CLI tests."""

from tests.mahavishnu.cli_harness import up

__all__ = ["up"]
