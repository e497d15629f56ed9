"""A real RTSP server for the tests (GStreamer's gst-rtsp-server through Debian's python3-gi),
run as its own process by the system Python:

    /usr/bin/python3 tests/art_edge/rtsp_server.py PORT   → rtsp://127.0.0.1:PORT/cam

It serves GStreamer's test video (a moving ball, 160×120 at 30 FPS, live), H.264 over RTP,
until it is killed."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    port = sys.argv[1]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
