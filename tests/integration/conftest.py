"""Integration fixtures shared across modules."""

from tests.integration.directory_fixtures import directory

__all__ = ["directory"]
