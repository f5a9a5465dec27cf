"""RPC adapter of the storage node: the Node section of docs/rpc.md.

Each handler validates its arguments at the edge (types, sizes, unknown names: InvalidRequest
with the kind the gateway maps to S3) and calls ``ObjectService`` (client methods, from the
``gateway``) or ``ReplicaService`` (replica methods, from another node: ``node-*``). The ACL
is enforced by ``RpcServer`` before a handler runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Any

from node.manifest import check_key, parse_replica_meta, parse_user_fields
from node.objects import ObjectService
from node.append import Appender
from node.capacity import no_space_as_error
from node.complete import Completer
from node.manifest import MAX_CHUNK_BYTES, MAX_PARTS
from node.rename import Conditions, Renamer
from node.replica import ReplicaService
from proto.errors import InvalidRequest
from proto.logs import request_id_var
from proto.rpc import Call, Handler, Streamed

ACL: dict[str, list[str]] = {
    "PutObject": ["gateway"],
    "GetObject": ["gateway"],
    "HeadObject": ["gateway"],
    "DeleteObject": ["gateway"],
    "ListObjects": ["gateway"],
    "ReplicaPut": ["node-*"],
    "ReplicaDelete": ["node-*"],
    "ReplicaList": ["node-*"],
    "ReplicaFetch": ["node-*"],
    "SyncReplica": ["coordinator", "admin"],
    "RenameObject": ["gateway"],
    "ReplicaRename": ["node-*"],
    "AppendObject": ["gateway"],
    "ReplicaAppend": ["node-*"],
    "CompleteMultipart": ["gateway"],
    "ReplicaComplete": ["node-*"],
}

MAX_BUCKET_NAME = 255
MAX_BUCKET_ID_BYTES = 64
MAX_KEY_ARG_BYTES = 1024
MAX_LIST_KEYS = 1000
MAX_INLINE_BODY_BYTES = 1024 * 1024 + 64 * 1024  # a body carried in the request's ``data`` argument

_CONDITIONS = ("if_match", "if_none_match", "if_modified_since", "if_unmodified_since")
_ARGS: dict[str, frozenset[str]] = {
    "PutObject": frozenset({"bucket", "key", "bucket_version", "meta", "if_none_match", "if_match", "data"}),
    "GetObject": frozenset({"bucket", "key", "bucket_version", "range"}),
    "HeadObject": frozenset({"bucket", "key", "bucket_version"}),
    "DeleteObject": frozenset({"bucket", "key", "bucket_version"}),
    "ListObjects": frozenset({"bucket", "bucket_version", "prefix", "start_after", "max_keys"}),
    "ReplicaPut": frozenset({"bucket_id", "bucket", "epoch", "meta", "data"}),
    "ReplicaDelete": frozenset({"bucket_id", "bucket", "epoch", "key"}),
    "ReplicaList": frozenset({"bucket_id", "bucket", "epoch", "start_after", "limit"}),
    "SyncReplica": frozenset({"bucket", "epoch", "target"}),
    "ReplicaFetch": frozenset({"bucket_id", "bucket", "key", "object_id", "extent_id"}),
    "RenameObject": frozenset({"bucket", "key", "source_key", "bucket_version", "client_token",
                               *(f"{side}_{c}" for side in ("source", "dest") for c in _CONDITIONS)}),
    "ReplicaRename": frozenset({"bucket_id", "bucket", "epoch", "src", "dst", "object_id"}),
    "AppendObject": frozenset({"bucket", "key", "bucket_version", "offset", "meta"}),
    "ReplicaAppend": frozenset({"bucket_id", "bucket", "epoch", "key", "object_id", "extent_id", "first_index",
                                "base_etag", "chunk_bytes"}),
    "CompleteMultipart": frozenset({"bucket", "key", "bucket_version", "meta", "parts", "if_none_match", "if_match"}),
    "ReplicaComplete": frozenset({"bucket_id", "bucket", "epoch", "key", "object_id", "take", "manifest"}),
}


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, kind="InvalidArgument")


def _check_names(method: str, args: dict[str, Any]) -> None:
    unknown = sorted(str(k) for k in args if k not in _ARGS[method])
    if unknown:
        raise _invalid(f"{method}: unknown argument(s) {', '.join(unknown)}")


def _str(args: dict[str, Any], name: str, *, max_bytes: int, default: str | None = None) -> str:
    value = args.get(name)
    value = default if value is None else value
    if not isinstance(value, str) or len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise _invalid(f"{name} must be a string of at most {max_bytes} bytes")
    return value


def _int(args: dict[str, Any], name: str, *, default: int | None = None, lo: int = 0) -> int:
    value = args.get(name)
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise _invalid(f"{name} must be an integer >= {lo}")
    return value


def _bucket(args: dict[str, Any]) -> str:
    name = _str(args, "bucket", max_bytes=MAX_BUCKET_NAME)
    if not name:
        raise _invalid("bucket must not be empty")
    return name


def _bucket_id(args: dict[str, Any]) -> bytes:
    value = args.get("bucket_id")
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_BUCKET_ID_BYTES:
        raise _invalid(f"bucket_id must be 1..{MAX_BUCKET_ID_BYTES} bytes")
    return value


def _body(call: Call) -> AsyncIterable[bytes] | bytes | None:
    """The request body: streamed, or whole in the ``data`` argument (small writes: one message)."""
    data = call.args.get("data")
    if data is None:
        return call.body
    if not isinstance(data, bytes) or len(data) > MAX_INLINE_BODY_BYTES:
        raise _invalid(f"data must be at most {MAX_INLINE_BODY_BYTES} bytes")
    if call.body is not None:
        raise _invalid("data and a streamed body are mutually exclusive")
    return data


def _range(args: dict[str, Any]) -> tuple[int, int] | None:
    value = args.get("range")
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise InvalidRequest("range must be [first, last]", kind="InvalidRange")
    return value[0], value[1]


class NodeHandlers:
    def __init__(self, objects: ObjectService, replicas: ReplicaService, repairer: Any = None,
                 renamer: Renamer | None = None) -> None:
        self._objects = objects
        self._replicas = replicas
        self._repairer = repairer
        self._renamer = renamer if renamer is not None else Renamer(objects, replicas)
        self._appender = Appender(objects, replicas)
        self._completer = Completer(objects, replicas)

    def handlers(self) -> dict[str, Handler]:
        table: dict[str, Callable[[Call], Any]] = {
            "PutObject": self.put_object, "GetObject": self.get_object, "HeadObject": self.head_object,
            "DeleteObject": self.delete_object, "ListObjects": self.list_objects,
            "ReplicaPut": self.replica_put, "ReplicaDelete": self.replica_delete,
            "ReplicaList": self.replica_list, "SyncReplica": self.sync_replica,
            "ReplicaFetch": self.replica_fetch, "RenameObject": self.rename_object,
            "ReplicaRename": self.replica_rename, "AppendObject": self.append_object,
            "ReplicaAppend": self.replica_append, "CompleteMultipart": self.complete_multipart,
            "ReplicaComplete": self.replica_complete,
        }
        return {method: no_space_as_error(h, self._objects.node_id) for method, h in table.items()}

    @staticmethod
    def _begin(call: Call) -> dict[str, Any]:
        request_id_var.set(call.request_id)
        _check_names(call.method, call.args)
        return call.args

    async def put_object(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        bucket, key, version = _bucket(a), check_key(a.get("key")), _int(a, "bucket_version")
        user = parse_user_fields(a.get("meta"))
        if_none_match = a.get("if_none_match", False)
        if not isinstance(if_none_match, bool):
            raise _invalid("if_none_match must be a boolean")
        if_match = None if a.get("if_match") is None else _str(a, "if_match", max_bytes=MAX_KEY_ARG_BYTES)
        meta = await self._objects.put_object(bucket=bucket, key=key, bucket_version=version, user=user,
                                              if_none_match=if_none_match, if_match=if_match, body=_body(call),
                                              request_id=call.request_id)
        return {"meta": meta}

    async def get_object(self, call: Call) -> Streamed:
        a = self._begin(call)
        meta, body = await self._objects.get_object(bucket=_bucket(a), key=check_key(a.get("key")),
                                                    bucket_version=_int(a, "bucket_version"), byte_range=_range(a))
        return Streamed({"meta": meta}, body)

    async def head_object(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        meta = await self._objects.head_object(bucket=_bucket(a), key=check_key(a.get("key")),
                                               bucket_version=_int(a, "bucket_version"))
        return {"meta": meta}

    async def delete_object(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        return await self._objects.delete_object(bucket=_bucket(a), key=check_key(a.get("key")),
                                                 bucket_version=_int(a, "bucket_version"),
                                                 request_id=call.request_id)

    async def list_objects(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        max_keys = min(_int(a, "max_keys", default=MAX_LIST_KEYS), MAX_LIST_KEYS)
        return await self._objects.list_objects(
            bucket=_bucket(a), bucket_version=_int(a, "bucket_version"),
            prefix=_str(a, "prefix", max_bytes=MAX_KEY_ARG_BYTES, default=""),
            start_after=_str(a, "start_after", max_bytes=MAX_KEY_ARG_BYTES, default=""), max_keys=max_keys)

    async def replica_put(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        return await self._replicas.replica_put(caller=call.principal, bucket_id=_bucket_id(a), bucket=_bucket(a),
                                                epoch=_int(a, "epoch"), start=parse_replica_meta(a.get("meta")),
                                                body=_body(call))

    async def replica_delete(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        return await self._replicas.replica_delete(caller=call.principal, bucket_id=_bucket_id(a),
                                                   bucket=_bucket(a), epoch=_int(a, "epoch"),
                                                   key=check_key(a.get("key")))

    async def replica_list(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        limit = min(_int(a, "limit", default=MAX_LIST_KEYS, lo=1), MAX_LIST_KEYS)
        return await self._replicas.replica_list(caller=call.principal, bucket_id=_bucket_id(a), bucket=_bucket(a),
                                                 epoch=_int(a, "epoch"),
                                                 start_after=_str(a, "start_after", max_bytes=MAX_KEY_ARG_BYTES,
                                                                  default=""), limit=limit)

    async def sync_replica(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        if self._repairer is None:
            raise _invalid("this node does not run repairs")
        return await self._repairer.start_sync(_bucket(a), _int(a, "epoch"),
                                               _str(a, "target", max_bytes=MAX_BUCKET_NAME))

    async def replica_fetch(self, call: Call) -> Streamed:
        a = self._begin(call)
        object_id = a.get("object_id")
        extent_id = a.get("extent_id")
        if not isinstance(object_id, bytes) or len(object_id) != 16:
            raise _invalid("object_id must be 16 bytes")
        if extent_id is not None and (not isinstance(extent_id, bytes) or len(extent_id) != 16):
            raise _invalid("extent_id must be 16 bytes")
        meta, body = await self._replicas.replica_fetch(caller=call.principal, bucket_id=_bucket_id(a),
                                                        bucket=_bucket(a), key=check_key(a.get("key")),
                                                        object_id=object_id, extent_id=extent_id)
        return Streamed(meta, body)

    @staticmethod
    def _conditions(a: dict[str, Any], side: str) -> Conditions:
        out: dict[str, Any] = {}
        for name in ("if_match", "if_none_match"):
            if a.get(f"{side}_{name}") is not None:
                out[name] = _str(a, f"{side}_{name}", max_bytes=MAX_KEY_ARG_BYTES).strip().strip('"')
        for name in ("if_modified_since", "if_unmodified_since"):
            value = a.get(f"{side}_{name}")
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise _invalid(f"{side}_{name} must be a number (epoch seconds)")
                out[name] = float(value)
        return Conditions(**out)

    async def rename_object(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        token = None if a.get("client_token") is None else _str(a, "client_token", max_bytes=128)
        return await self._renamer.rename_object(
            bucket=_bucket(a), src=check_key(a.get("source_key")), dst=check_key(a.get("key")),
            bucket_version=_int(a, "bucket_version"), src_cond=self._conditions(a, "source"),
            dst_cond=self._conditions(a, "dest"), client_token=token, request_id=call.request_id)

    async def replica_rename(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        object_id = a.get("object_id")
        if not isinstance(object_id, bytes) or len(object_id) != 16:
            raise _invalid("object_id must be 16 bytes")
        return await self._renamer.replica_rename(caller=call.principal, bucket_id=_bucket_id(a), bucket=_bucket(a),
                                                  epoch=_int(a, "epoch"), src=check_key(a.get("src")),
                                                  dst=check_key(a.get("dst")), object_id=object_id)

    async def append_object(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        user = parse_user_fields(a.get("meta"))
        meta = await self._appender.append_object(bucket=_bucket(a), key=check_key(a.get("key")),
                                                  bucket_version=_int(a, "bucket_version"), offset=_int(a, "offset"),
                                                  user=user, body=call.body, request_id=call.request_id)
        return {"meta": meta}

    async def replica_append(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        ids = {}
        for name in ("object_id", "extent_id"):
            value = a.get(name)
            if not isinstance(value, bytes) or len(value) != 16:
                raise _invalid(f"{name} must be 16 bytes")
            ids[name] = value
        chunk_bytes = _int(a, "chunk_bytes", lo=1)
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise _invalid("chunk_bytes is out of range")
        return await self._appender.replica_append(
            caller=call.principal, bucket_id=_bucket_id(a), bucket=_bucket(a), epoch=_int(a, "epoch"),
            key=check_key(a.get("key")), first_index=_int(a, "first_index"), base_etag=_str(a, "base_etag", max_bytes=128),
            chunk_bytes=chunk_bytes, body=call.body, **ids)

    async def complete_multipart(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        parts = a.get("parts")
        if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_PARTS:
            raise _invalid(f"parts must list 1..{MAX_PARTS} keys")
        parts = [check_key(p) for p in parts]
        if_none_match = a.get("if_none_match", False)
        if not isinstance(if_none_match, bool):
            raise _invalid("if_none_match must be a boolean")
        if_match = None if a.get("if_match") is None else _str(a, "if_match", max_bytes=MAX_KEY_ARG_BYTES)
        meta = await self._completer.complete(
            bucket=_bucket(a), key=check_key(a.get("key")), bucket_version=_int(a, "bucket_version"),
            user=parse_user_fields(a.get("meta")), parts=parts, if_none_match=if_none_match, if_match=if_match,
            request_id=call.request_id)
        return {"meta": meta}

    async def replica_complete(self, call: Call) -> dict[str, Any]:
        a = self._begin(call)
        object_id, manifest, take = a.get("object_id"), a.get("manifest"), a.get("take")
        if not isinstance(object_id, bytes) or len(object_id) != 16:
            raise _invalid("object_id must be 16 bytes")
        if not isinstance(manifest, bytes):
            raise _invalid("manifest must be bytes")
        if not isinstance(take, list) or not 1 <= len(take) <= MAX_PARTS or not all(
                isinstance(t, list) and len(t) == 2 and isinstance(t[1], bytes) and len(t[1]) == 16 for t in take):
            raise _invalid(f"take must list 1..{MAX_PARTS} [key, object id] pairs")
        return await self._completer.replica_complete(
            caller=call.principal, bucket_id=_bucket_id(a), bucket=_bucket(a), epoch=_int(a, "epoch"),
            key=check_key(a.get("key")), object_id=object_id, take=[(check_key(k), o) for k, o in take],
            manifest=manifest)
