"""ART edge runtime: preprocessing, backends, video sources and outputs.

Runs on a device with numpy, OpenCV and an inference runtime only: never import torch here.
"""

__version__ = "0.1.0"
