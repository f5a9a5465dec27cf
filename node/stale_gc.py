"""Which local bucket copies are garbage: the pure decisions of the stale-copy collection.

A node keeps a copy of every bucket it was ever a replica of until something deletes it; when
the node leaves a bucket's replica set (it was replaced after being down, drained, or the set
changed) or the bucket is deleted (a recreated bucket has a new id), that copy is garbage.
Deleting data wrongly is data loss, so every rule here errs towards keeping:

* the coordinator's answer (``GetBucketsById``, read from its store, never a cache) is the only
  evidence; a bucket id is *garbage* when the answer says it does not exist, or that it exists
  and this node is not in its replica set (not even ``syncing``);
* a missing, malformed or unknown answer is *doubt*: the copy is kept and any earlier suspicion
  is forgotten (the clock starts again); a reply saying the catalog holds no bucket at all (an
  empty or lost coordinator database) is doubt for every id;
* a copy is collected only when it was garbage at a first check and is garbage again at a later
  check at least ``grace_s`` after it, with the same view or a newer one: the epoch may only
  have grown, and a bucket id that did not exist may not exist again (``consistent``);
* the collector (``node.stale_collector``) asks once more, fresh, after fencing the bucket's
  writes and just before deleting (``StalePlanner.confirm``).

No I/O here: time is passed in (``now``, monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Answer", "StalePlanner", "Suspect", "consistent", "is_garbage", "parse_reply"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The coordinator's word on one bucket id."""

    exists: bool
    member: bool = False
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Suspect:
    """A bucket copy seen as garbage at ``since``, under that view (``epoch`` None: no bucket)."""

    since: float
    epoch: int | None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_reply(reply: Any, asked: Iterable[bytes]) -> dict[bytes, Answer]:
    """The well-formed answers of a ``GetBucketsById`` reply, for the ids asked only. Anything
    malformed is left out (doubt); a catalog holding no bucket at all gives no answer at all."""
    asked = set(asked)
    if not isinstance(reply, Mapping) or not _int(reply.get("catalog_buckets")) or reply["catalog_buckets"] < 1:
        return {}
    entries = reply.get("buckets")
    if not isinstance(entries, list):
        return {}
    out: dict[bytes, Answer] = {}
    seen: set[bytes] = set()
    for e in entries:
        if not isinstance(e, Mapping) or not isinstance(e.get("bucket_id"), bytes):
            continue
        bucket_id = e["bucket_id"]
        if bucket_id not in asked or bucket_id in seen:
            out.pop(bucket_id, None)  # unasked, or two answers for one id: doubt
            seen.add(bucket_id)
            continue
        seen.add(bucket_id)
        exists = e.get("exists")
        if exists is False:
            out[bucket_id] = Answer(exists=False)
        elif exists is True and isinstance(e.get("member"), bool) and _int(e.get("epoch")):
            out[bucket_id] = Answer(exists=True, member=e["member"] or e.get("syncing") is True, epoch=e["epoch"])
    return out


def is_garbage(answer: Answer | None) -> bool:
    """Whether the coordinator said this copy is no longer needed here (None: no answer: keep)."""
    return answer is not None and (not answer.exists or not answer.member)


def consistent(prior: Suspect, answer: Answer) -> bool:
    """Whether ``answer`` is the view of ``prior`` or a newer one."""
    if prior.epoch is None:
        return not answer.exists  # a bucket id does not come back
    return not answer.exists or answer.epoch >= prior.epoch


class StalePlanner:
    """Tracks suspected garbage across checks; ``observe`` says which copies are due."""

    def __init__(self, *, grace_s: float) -> None:
        if grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        self.grace_s = grace_s
        self.suspects: dict[bytes, Suspect] = {}

    def _judge(self, now: float, bucket_id: bytes, answer: Answer | None) -> bool:
        """Record one check; True if the copy has been garbage, consistently, for the grace period."""
        if not is_garbage(answer):
            self.suspects.pop(bucket_id, None)
            return False
        assert answer is not None
        prior = self.suspects.get(bucket_id)
        if prior is None or not consistent(prior, answer):
            self.suspects[bucket_id] = Suspect(now, answer.epoch if answer.exists else None)
            return False
        return now - prior.since >= self.grace_s

    def observe(self, now: float, held: Iterable[bytes], answers: Mapping[bytes, Answer]) -> list[bytes]:
        """One check of every bucket id held here; the ids due for collection (in ``held`` order).
        Ids no longer held are forgotten."""
        held = list(held)
        due = [b for b in held if self._judge(now, b, answers.get(b))]
        keep = set(held)
        for b in [b for b in self.suspects if b not in keep]:
            del self.suspects[b]
        return due

    def confirm(self, now: float, bucket_id: bytes, answer: Answer | None) -> bool:
        """The last check, just before deleting: still garbage, consistently, past the grace."""
        return bucket_id in self.suspects and self._judge(now, bucket_id, answer)

    def forget(self, bucket_id: bytes) -> None:
        self.suspects.pop(bucket_id, None)
