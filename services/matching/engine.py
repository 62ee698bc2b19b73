"""Kept for `maillage rebuild matching`, which loads the replica's `apply_actor` from this module by name.

The matching use cases live in `services.matching.service`; drop this module when the launcher names
`service.apply_actor` instead.
"""

from services.matching.service import apply_actor

__all__ = ["apply_actor"]
