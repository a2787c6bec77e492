"""The status table equals Hubject's OpenAPI StatusCode.yaml (code and meaning), when present."""

import os
import re

import pytest

from firmware import oicp_status

SPEC = "/work/shared/reference/oicp-cpo-2.3-openapi/schemas/StatusCode.yaml"


def _norm(text):
    return re.sub(r"[\s.\u2013\-/]+", " ", text).strip().lower()


@pytest.mark.skipif(not os.path.exists(SPEC), reason="reference OpenAPI files not on this host")
def test_matches_openapi_table():
    rows = re.findall(r"^\s*\|\s*(\d{3})\s*\|([^|]+)\|", open(SPEC, encoding="utf-8").read(), re.M)
    spec = {code: meaning for code, meaning in rows}
    assert sorted(spec) == sorted(oicp_status.CODES)
    for code, meaning in spec.items():
        assert _norm(oicp_status.CODES[code]) == _norm(meaning), code
