"""Integration fixtures shared across modules."""

from tests.integration.directory_fixtures import directory
from tests.integration.matching_fixtures import matching

__all__ = ["directory", "matching"]
