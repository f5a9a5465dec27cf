"""node/rename.py pure parts: the conditions of both sides, the idempotency-token table."""

import pytest

from node.rename import Conditions, TokenTable, check_rename_conditions
from proto.errors import InvalidRequest, NotFound, PreconditionFailed

SRC = {"etag": "aa", "last_modified": 1000.5}
DST = {"etag": "bb", "last_modified": 2000.0}
NONE = Conditions()


@pytest.mark.parametrize("src_cond,dst_cond,dst,error", [
    (NONE, NONE, DST, None),
    (NONE, Conditions(if_none_match="*"), DST, PreconditionFailed),
    (NONE, Conditions(if_none_match="*"), None, None),
    (NONE, Conditions(if_none_match="bb"), DST, PreconditionFailed),
    (NONE, Conditions(if_none_match="cc"), DST, None),
    (NONE, Conditions(if_match="bb"), DST, None),
    (NONE, Conditions(if_match="*"), DST, None),
    (NONE, Conditions(if_match="cc"), DST, PreconditionFailed),
    (NONE, Conditions(if_match="bb"), None, NotFound),
    (NONE, Conditions(if_modified_since=2000.0), DST, PreconditionFailed),
    (NONE, Conditions(if_modified_since=1999.0), DST, None),
    (NONE, Conditions(if_unmodified_since=1999.0), DST, PreconditionFailed),
    (Conditions(if_match="aa"), NONE, None, None),
    (Conditions(if_match="zz"), NONE, None, PreconditionFailed),
    (Conditions(if_none_match="aa"), NONE, None, PreconditionFailed),
    (Conditions(if_unmodified_since=1000.0), NONE, None, None),  # whole seconds: 1000.5 -> 1000
    (Conditions(if_modified_since=1000.0), NONE, None, PreconditionFailed),
])
def test_conditions(src_cond, dst_cond, dst, error):
    if error is None:
        check_rename_conditions("s", SRC, "d", dst, src_cond, dst_cond)
    else:
        with pytest.raises(error):
            check_rename_conditions("s", SRC, "d", dst, src_cond, dst_cond)


def test_missing_source_is_no_such_key():
    with pytest.raises(NotFound) as e:
        check_rename_conditions("s", None, "d", DST, NONE, NONE)
    assert e.value.kind == "NoSuchKey"


def test_token_table():
    now = [0.0]
    t = TokenTable(clock=lambda: now[0], size=2, ttl_s=10)
    b = b"b" * 16
    assert not t.check(b, "t1", "a", "b") and not t.check(b, None, "a", "b")
    t.remember(b, "t1", "a", "b")
    assert t.check(b, "t1", "a", "b")
    with pytest.raises(InvalidRequest) as e:
        t.check(b, "t1", "a", "c")
    assert e.value.kind == "IdempotencyParameterMismatch"
    assert not t.check(b"c" * 16, "t1", "a", "c")  # tokens are per bucket
    now[0] = 11
    assert not t.check(b, "t1", "a", "c")  # expired
    t.remember(b, "t2", "x", "y")
    t.remember(b, "t3", "x", "y")
    t.remember(b, "t4", "x", "y")
    assert not t.check(b, "t2", "q", "r")  # bounded: the oldest went
