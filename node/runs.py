"""Objects made of several *runs* of sealed chunks: appended objects (and zero-copy multipart).

Theory of operation
-------------------
A run is a sequence of chunks sealed back to back in one extent of the store, exactly like a
whole object written by PutObject: every chunk but the run's final one holds ``chunk_bytes``
of plaintext, and the final one carries the codec's *last* flag. An object written once is
one run (its extent id is its object id, its chunks are indexed from 0), and its manifest has
no ``runs`` field. An append adds a run: the new chunks are sealed under the **same object
id** (hence the same per-object key and AAD binding) with indexes that continue after the
chunks already there, and stored in a new extent of their own (a random extent id), so the
previous run - last flag included - is never rewritten. The manifest then lists every run::

    runs: [[extent_id, crypto_id, first_index, chunks, size, chunk_bytes, key_gen], ...]

``crypto_id`` is the object id the chunks were sealed under (the object's own for its first
run and for appends; a part's own id for a zero-copy multipart object, whose runs are the
parts' extents), ``first_index`` the index of the run's first chunk. The reader authenticates
each chunk against (bucket id, crypto id, first_index + i, last flag exactly on the run's final
chunk), so a run cannot be truncated, reordered, or moved under another object id unnoticed;
what the runs are and in which order is the manifest's (the index's) to say, as the chunk
count already was for single-run objects.

The store keeps, per object version, the list of the further extents it owns (``runs`` table
of ``node.store_index``), so deleting or overwriting the object frees them, compaction moves
them (``ObjectStore.holder_of``), and recovery keeps them.

Reads (``open_stream``) go run by run, opening one extent at a time (bounded memory and file
descriptors whatever the number of runs); a range reads only the chunks it needs. A chunk that
fails verification has its run's extent repaired from another replica's copy of that extent
(read repair, ``Repairer.repair_object``), and the read goes on from the fresh copy, even in
the middle of the stream (what was served before came from authenticated chunks); if no
replica has a good copy, the read fails (IntegrityError), never with bad bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from node.chunk_codec import derive_object_key
from node.reader import ChunkReader
from proto.errors import IntegrityError, InvalidRequest

MAX_RUNS = 10000


@dataclass(frozen=True, slots=True)
class Run:
    extent_id: bytes
    crypto_id: bytes
    first_index: int
    chunks: int
    size: int
    chunk_bytes: int
    key_gen: int

    def encode(self) -> list[Any]:
        return [self.extent_id, self.crypto_id, self.first_index, self.chunks, self.size, self.chunk_bytes,
                self.key_gen]


def runs_of(manifest: dict[str, Any]) -> list[Run]:
    """The runs of a stored manifest (a single implicit run when it has no ``runs`` field)."""
    raw = manifest.get("runs")
    if raw is None:
        oid = manifest["object_id"]
        return [Run(oid, oid, 0, manifest["chunks"], manifest["size"], manifest["chunk_bytes"], manifest["key_gen"])]
    return [Run(bytes(r[0]), bytes(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in raw]


def version_tag(object_id: bytes, manifest: dict[str, Any]) -> bytes:
    """What replica sync compares to know two copies are the same version: the object id and
    the ETag (an append keeps the object id but changes the ETag; two copies may lay the same
    version out in different runs - a re-sealed copy is one run - and still be equal)."""
    return object_id + hashlib.md5(manifest["etag"].encode(), usedforsecurity=False).digest()[:8]


def part_count(manifest: dict[str, Any]) -> int:
    """How many parts the object counts towards AWS's limit of 10000 (appends plus the parts of
    a multipart upload)."""
    if "part_count" in manifest:
        return int(manifest["part_count"])
    parts = (manifest.get("multipart") or {}).get("parts")
    return len(parts) if parts else 1


def total_chunks(manifest: dict[str, Any]) -> int:
    return sum(r.chunks for r in runs_of(manifest))


def plan(runs: list[Run], first: int, last: int) -> list[tuple[int, int, int]]:
    """Pure: the runs a byte range [first, last] touches, as (run index, local first, local last)."""
    out = []
    base = 0
    for i, run in enumerate(runs):
        lo, hi = base, base + run.size - 1
        if run.size and hi >= first and lo <= last:
            out.append((i, max(first, lo) - base, min(last, hi) - base))
        base += run.size
    return out


async def open_stream(svc: Any, rec: Any, bucket: str, manifest: dict[str, Any],
                      byte_range: tuple[int, int] | None) -> AsyncIterator[bytes]:  # noqa: C901
    """The plaintext of a multi-run object (or of an inclusive range of it). The first chunk
    is read and verified before this returns (a damaged object fails the call itself)."""
    size = manifest["size"]
    first, last = byte_range if byte_range is not None else (0, size - 1)
    if byte_range is not None and not 0 <= first <= last < size:
        raise InvalidRequest(f"range {first}-{last} is outside the object (size {size})", kind="InvalidRange")
    runs = runs_of(manifest)
    todo = plan(runs, first, last) if size else []
    store = svc._store

    async def open_run(i: int, lo: int) -> tuple[ChunkReader, int]:
        run = runs[i]
        try:
            data = await trio.to_thread.run_sync(store.open_data, rec.bucket_id, run.extent_id)
        except FileNotFoundError:
            raise IntegrityError(f"run {i} of {manifest['key']!r} is missing on {svc.node_id}",
                                 kind="IntegrityError") from None
        try:
            key = derive_object_key(await svc._bucket_key(rec, run.key_gen), run.crypto_id)
        except BaseException:
            data.close()
            raise
        reader = ChunkReader(data, object_key=key, bucket_id=rec.bucket_id, manifest={
            "object_id": run.crypto_id, "chunk_bytes": run.chunk_bytes, "chunks": run.chunks, "size": run.size,
            "first_index": run.first_index})
        return reader, lo // run.chunk_bytes

    async def repaired(i: int) -> bool:
        """Read repair of run ``i``: its extent here is damaged; replace it with a replica's copy
        of the same extent (``ObjectService.read_repair``). True if done."""
        repair = getattr(svc, "read_repair", None)
        if repair is None:
            return False
        return bool(await repair(rec, manifest["key"], manifest["object_id"], runs[i].extent_id))

    async def read(i: int, reader: ChunkReader, index: int, seek: bool) -> tuple[ChunkReader, tuple[int, bytes]]:
        """Chunk ``index`` of run ``i`` (the reader is there already unless ``seek``). A chunk that
        fails verification has its run repaired from a replica, and is read again from the fresh
        copy, by a new reader (returned; the caller closes the old one). Bytes served before came
        from authenticated chunks, so the stream goes on where it was."""
        try:
            return reader, await svc._read_chunk(reader, bucket, seek=index if seek else None)
        except IntegrityError:
            if not await repaired(i):
                raise
        fresh, _ = await open_run(i, 0)
        try:
            return fresh, await svc._read_chunk(fresh, bucket, seek=index)
        except BaseException:
            fresh.close()
            raise

    first_reader: ChunkReader | None = None
    first_chunk: tuple[int, bytes] | None = None
    if todo:
        reader0, seek = await open_run(todo[0][0], todo[0][1])
        try:
            first_reader, first_chunk = await read(todo[0][0], reader0, seek, True)
        finally:
            if first_reader is not reader0:
                reader0.close()

    async def stream() -> AsyncIterator[bytes]:
        reader = first_reader
        try:
            for n, (i, lo, hi) in enumerate(todo):
                cb = runs[i].chunk_bytes
                index = lo // cb
                if n > 0:
                    reader, _ = await open_run(i, lo)
                while index <= hi // cb:
                    assert reader is not None
                    if n == 0 and index == lo // cb:
                        got = first_chunk
                    else:
                        fresh, got = await read(i, reader, index, n > 0 and index == lo // cb)
                        if fresh is not reader:
                            reader.close()
                            reader = fresh
                    assert got is not None
                    base = got[0] * cb
                    piece = got[1][max(lo - base, 0):max(0, min(hi - base + 1, len(got[1])))]
                    if piece:
                        yield piece
                    index += 1
                reader.close()
                reader = None
        finally:
            if reader is not None:
                reader.close()

    return stream()
