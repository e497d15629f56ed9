"""Video in and out: sources (cameras, files, streams, LISTs, synthetic), outputs (video files,
the display, the status line), the overlay, regions of interest. Imports the ground and the
runtime, never the rig or what serves it.
"""
