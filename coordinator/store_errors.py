"""The coordinator store's own failure types (shared by ``store`` and its table mixins).

The catalog and IAM layers turn them into the typed RPC errors of ``proto.errors``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own failures."""


class SchemaError(StoreError):
    """The database file has a schema this code cannot use."""


class NoSuchRow(StoreError):
    """The user, key, policy, group or bucket named does not exist (message says which)."""


class RowExists(StoreError):
    """A row with that name or id already exists."""


class HasDependents(StoreError):
    """The row cannot be deleted while others refer to it."""


class LimitReached(StoreError):
    """A limit (access keys, policy bytes, versions, attachments) would be exceeded."""


class VersionMismatch(StoreError):
    """A compare-and-swap update found another version than expected."""
