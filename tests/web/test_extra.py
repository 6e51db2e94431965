"""The web extra: importing the web layer without FastAPI says in one line what to install."""

from __future__ import annotations

import importlib
import sys

import pytest

from jobtrail.exceptions import MissingExtra


def test_importing_the_web_layer_without_its_extra_says_in_one_line_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.delitem(sys.modules, "jobtrail.web")

    with pytest.raises(MissingExtra) as missing:
        importlib.import_module("jobtrail.web")

    message = str(missing.value)
    assert "pip install 'jobtrail[web]'" in message
    assert "fastapi" in message
    assert "\n" not in message
    assert isinstance(missing.value, ImportError)
