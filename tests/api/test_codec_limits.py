"""A document that no parser can turn into values is an ObjectInvalid naming why, never
another exception.

Regression (issue 14, chaos scenario 6): an integer of more than 4300 digits (Python's
int_max_str_digits) in YAML, or in JSON (which is then tried as flow-style YAML), made
PyYAML raise a bare ValueError out of `parse_document`: the store turned it into "cannot
decode" and `docket validate` into a traceback. Found by tests/chaos/fuzz.py."""

from __future__ import annotations

import pytest

from controller.api import ObjectInvalid, decode_object
from controller.api.codec import parse_document

DIGITS = "9" * 5000


@pytest.mark.parametrize("text", [
    f"apiVersion: docket.dev/v1\nkind: Job\nspec:\n  completions: {DIGITS}\n",
    '{"apiVersion": "docket.dev/v1", "kind": "Job", "spec": {"completions": ' + DIGITS + "}}",
])
def test_an_integer_too_long_to_convert_is_an_invalid_document(text: str) -> None:
    with pytest.raises(ObjectInvalid) as caught:
        parse_document(text.encode())
    assert "invalid" in str(caught.value) and "4300" in str(caught.value)
    with pytest.raises(ObjectInvalid):
        decode_object(text, plural="jobs", namespace="default", name="x")
