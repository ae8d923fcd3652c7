"""Issue 23: credentials in a URI never reach the terminal, whichever command echoes the URI in its error.

Each case runs ``vggedge`` in a subprocess on an input ``http://user:secret@127.0.0.1:9/...`` (port 9 refuses
the connection at once) and checks that stderr and stdout hold ``user:***@`` and never the password.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from faultkit import vggedge
from vggedge.errors import EXIT_ERROR, EXIT_PARTIAL

URL = "http://user:secret@127.0.0.1:9"


def assert_redacted(text: str) -> None:
    assert "secret" not in text, text
    assert "user:***@127.0.0.1:9" in text, text
    assert "Traceback" not in text, text


def test_classify_names_a_url_it_cannot_read_without_its_password(top_model: Path) -> None:
    result = vggedge("classify", "--model", top_model, f"{URL}/x.jpg", "--json", timeout=120)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    assert_redacted(result.stderr)
    assert_redacted(result.stdout)  # the JSON report names the image too


def test_batch_names_a_list_url_it_cannot_read_without_its_password(top_model: Path, tmp_path: Path) -> None:
    result = vggedge("batch", f"{URL}/list.txt", "--out", tmp_path / "o.jsonl", "--model", top_model,
                     "--no-progress", timeout=120)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert_redacted(result.stderr)
    assert "list file" in result.stderr


@pytest.mark.parametrize("uri", [f"{URL}/x.mjpg", f"rtsp://user:secret@127.0.0.1:9/s"])
def test_stream_names_a_source_it_cannot_open_without_its_password(top_model: Path, uri: str) -> None:
    result = vggedge("stream", uri, "--model", top_model, "--read-timeout", "1", timeout=120)
    assert result.returncode == EXIT_ERROR, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vggedge: error:")]
    assert len(errors) == 1 and "secret" not in result.stderr, result.stderr
    assert "user:***@127.0.0.1:9" in errors[0]
