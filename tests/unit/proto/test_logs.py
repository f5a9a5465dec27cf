"""Log lines: key=value or JSON (with the pairs as fields), daemon and request id, never a secret."""

import json
import logging

from proto.logs import JsonFormatter, KeyValueFormatter, RedactingFilter, parse_fields, request_id_var


def _format(formatter, msg, *args):
    record = logging.LogRecord("gateway.observe", logging.INFO, __file__, 1, msg, args, None)
    RedactingFilter("gateway", "gateway-1").filter(record)
    return formatter.format(record)


def test_json_lines_carry_the_pairs_as_fields():
    token = request_id_var.set("REQ42")
    try:
        line = _format(JsonFormatter(), "event=request op=%s bucket=%s status=%d duration_ms=%.3f error=-",
                       "GetObject", "b--use1-az4--x-s3", 200, 1.5)
    finally:
        request_id_var.reset(token)
    doc = json.loads(line)
    assert doc["daemon"] == "gateway" and doc["request_id"] == "REQ42"
    assert doc["event"] == "request" and doc["op"] == "GetObject" and doc["bucket"] == "b--use1-az4--x-s3"
    assert doc["status"] == 200 and doc["duration_ms"] == 1.5
    assert "msg" not in doc


def test_prose_stays_a_message_and_secrets_are_redacted_in_both_formats():
    doc = json.loads(_format(JsonFormatter(), "hello world"))
    assert doc["msg"] == "hello world"
    for fmt in (JsonFormatter(), KeyValueFormatter()):
        line = _format(fmt, "event=x secret_access_key=%s signature=%s", "wJalrXUtnFEMI", "abcdef0123")
        assert "wJalrXUtnFEMI" not in line and "abcdef0123" not in line


def test_parse_fields():
    assert parse_fields('a=1 b="x y" c=-') == {"a": 1, "b": "x y", "c": "-"}
    assert parse_fields("level=3") == {"field_level": 3}
    assert parse_fields("not pairs") is None
    assert parse_fields("a=nan") == {"a": "nan"}
