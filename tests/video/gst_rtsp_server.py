"""A real RTSP server for the tests: GStreamer's gst-rtsp-server (PyGObject), serving a video file on 127.0.0.1.

Run with the system Python that has python3-gi: ``python3 gst_rtsp_server.py PORT NAME CLIP.mp4``.
Each client gets the clip (H.264 in MP4) from its start, at its native rate, like a camera.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, name, clip = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 "
                       "config-interval=1 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
