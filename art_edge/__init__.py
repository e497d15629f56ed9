"""ART edge: the runtime and the rig, in layers (docs/development.md): the ground (errors, files,
preprocess, cliplist, synthetic), runtime/ (engine dirs, backends, the engine, streaming), video/
(sources, outputs, overlay, ROI), rig/ (cameras, segments, clips, sinks, snapshots), serve/
(metrics, the dashboard), and the front doors api.py (Python) and cli.py (art-edge).

Runs on a device with numpy, OpenCV and an inference runtime only: never import torch here.
"""

__version__ = "0.1.0"
