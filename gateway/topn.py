"""Bounded label values for per-bucket metrics: the top N buckets by traffic, the rest ``other``.

A Prometheus label whose values come from users (bucket names) must have bounded cardinality,
or one client creating buckets in a loop grows the gateway's memory and the Prometheus TSDB
without limit. ``TopN`` keeps approximate request counts for at most ``capacity`` buckets
(the Space-Saving algorithm: an unseen bucket replaces the least counted one and inherits its
count, so heavy hitters are never lost), and every ``refresh_every`` observations recomputes
which ``n`` buckets get their own label. Every other bucket is reported as ``other``.

Theory of operation: ``label(bucket)`` counts one observation for ``bucket`` and answers the
label to use *now*. When the top set changes, ``pop_dropped`` gives the buckets that dropped
out, so the caller can remove their series (a removed counter series simply ends; ``rate()`` over
it stays correct). Counts decay by half at each refresh so the top set follows current traffic
rather than all-time totals. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

OTHER = "other"


class TopN:
    """See the module docstring."""

    def __init__(self, n: int, *, capacity: int | None = None, refresh_every: int = 1000) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        if refresh_every < 1:
            raise ValueError("refresh_every must be >= 1")
        self.n = n
        self.capacity = max(capacity if capacity is not None else 8 * n, n, 1)
        self.refresh_every = refresh_every
        self._counts: dict[str, float] = {}
        self._top: set[str] = set()
        self._since_refresh = 0
        self.dropped: list[str] = []  # buckets that left the top set, until pop_dropped()

    @property
    def top(self) -> frozenset[str]:
        return frozenset(self._top)

    def label(self, bucket: str | None) -> str:
        """Count one observation for ``bucket`` and return the label value to use for it.

        ``None`` (requests without a bucket, e.g. ListDirectoryBuckets) gives ``""``.
        """
        if bucket is None:
            return ""
        if self.n == 0:
            return OTHER
        self._observe(bucket)
        self._since_refresh += 1
        if bucket not in self._top and len(self._top) < self.n:
            self._top.add(bucket)  # free slot: take it at once (a new cluster's first buckets)
        if self._since_refresh >= self.refresh_every:
            self.refresh()
        return bucket if bucket in self._top else OTHER

    def _observe(self, bucket: str) -> None:
        if bucket in self._counts:
            self._counts[bucket] += 1
            return
        if len(self._counts) >= self.capacity:
            victim = min(self._counts, key=lambda b: (self._counts[b], b))
            inherited = self._counts.pop(victim)
            self._counts[bucket] = inherited + 1
        else:
            self._counts[bucket] = 1

    def refresh(self) -> list[str]:
        """Recompute the top set from the counts; the buckets that left it go to ``dropped``."""
        ranked = sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.n]
        new_top = {b for b, _ in ranked}
        self.dropped = self.dropped + sorted(self._top - new_top)
        self._top = new_top
        self._counts = {b: c / 2 for b, c in self._counts.items() if c / 2 >= 0.5}
        self._since_refresh = 0
        return self.dropped

    def pop_dropped(self) -> list[str]:
        """The buckets that left the top set since the last call (their series should go)."""
        dropped, self.dropped = self.dropped, []
        return dropped

    def forget(self, bucket: str) -> None:
        """A deleted bucket: stop tracking it (its label frees a slot)."""
        self._counts.pop(bucket, None)
        self._top.discard(bucket)
