"""Credentials are taken out of every URI shown or logged."""
from __future__ import annotations

import pytest

from vggedge.redact import redact_uri
from vggedge.video.sources import SourceError, open_source


@pytest.mark.parametrize("uri,shown", [
    ("http://user:s3cret@host/clip.avi", "http://user:***@host/clip.avi"),
    ("rtsp://admin:p@ss@cam:554/stream", "rtsp://admin:***@cam:554/stream"),
    ("rtsp://tokenonly@cam/x", "rtsp://***@cam/x"),
    ("https://h/v.mp4?X-Amz-Signature=abc&part=1&access_token=t", "https://h/v.mp4?X-Amz-Signature=***&part=1&access_token=***"),
    ("cannot open http://a:b@h:80/p: refused", "cannot open http://a:***@h:80/p: refused"),
    ("clip.mp4", "clip.mp4"), ("/dev/video0", "/dev/video0"), ("http://h/a@b.jpg", "http://h/a@b.jpg"),
    # a URL that went through pathlib ("http://" collapsed to "http:/"), as in "FILE: cannot read image file"
    ("http:/user:s3cret@h:9/x.jpg: cannot read", "http:/user:***@h:9/x.jpg: cannot read"),
    ("photos:/a/b@c.jpg", "photos:/a/b@c.jpg"), ("http:/h/a:b@c.jpg", "http:/h/a:b@c.jpg"),
])
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_sources_show_the_redacted_uri_and_open_the_real_one() -> None:
    source = open_source("rtsp://admin:s3cret@127.0.0.1:1/x")
    assert source.uri == "rtsp://admin:***@127.0.0.1:1/x" and "s3cret" in source.target()
    assert "s3cret" not in repr(source)
    with pytest.raises(SourceError) as info:
        open_source("ftp://u:s3cret@h/x")
    assert "s3cret" not in str(info.value) and "u:***@h" in str(info.value)
