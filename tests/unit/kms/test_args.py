"""kms/args.py: encryption context checks (the cheap path for small contexts and the exact one)."""

import pytest

from kms.args import MAX_CONTEXT_BYTES, parse_args
from kms.crypto import canonical_context
from proto.errors import InvalidRequest

BLOB = b"OZKB\x01" + b"C" * 80


def decrypt_args(ctx):
    return parse_args("Decrypt", {"ciphertext_blob": BLOB, "encryption_context": ctx})


def test_small_contexts_pass_and_are_copied():
    ctx = {"aws:s3:arn": "arn:aws:s3express:us-east-1:000000000000:bucket/b--use1-az4--x-s3", "é": "☃"}
    args, caller = decrypt_args(ctx)
    assert args["encryption_context"] == ctx and args["encryption_context"] is not ctx and caller is None


@pytest.mark.parametrize("ctx", [
    {"k": "\ud800"},  # a lone surrogate cannot be encoded: small context path
    {"\udfff" + "k" * 3000: "v" * 3000},  # ...and the exact path
    {"": "v"},
    {"k": 1},
    {f"k{i}": "v" for i in range(65)},
])
def test_bad_contexts_are_validation_errors(ctx):
    with pytest.raises(InvalidRequest) as ei:
        decrypt_args(ctx)
    assert ei.value.kind == "ValidationException"


def test_the_size_limit_is_exact_in_canonical_bytes():
    # "é" is one character but two bytes: the limit counts canonical JSON bytes
    def ctx_of(n):
        return {"k": "é" * n}

    overhead = len(canonical_context({"k": ""}))
    fits = (MAX_CONTEXT_BYTES - overhead) // 2
    assert len(canonical_context(ctx_of(fits))) <= MAX_CONTEXT_BYTES
    decrypt_args(ctx_of(fits))
    assert len(canonical_context(ctx_of(fits + 1))) > MAX_CONTEXT_BYTES
    with pytest.raises(InvalidRequest):
        decrypt_args(ctx_of(fits + 1))
    # control characters take 6 bytes each when escaped
    with pytest.raises(InvalidRequest):
        decrypt_args({"k": "\x01" * (MAX_CONTEXT_BYTES // 6 + 1)})
