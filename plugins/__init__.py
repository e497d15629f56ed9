"""CUDA kernels and TensorRT plugins for art::QRAttention and art::TrackletLink.

The kernels' shape limits, as Python sees them; `csrc/art_ops.h` defines the same numbers for
C and CUDA (a test checks that the two agree). Shapes beyond them take the PyTorch reference.
"""

QR_MAX_QUERIES = 16  # ART_QR_MAX_QUERIES: queries per frame (K), also TrackletLink's K
QR_MAX_TOKENS = 1024  # ART_QR_MAX_TOKENS: tokens per frame (L = HW)
LINK_MAX_FRAMES = 64  # ART_LINK_MAX_FRAMES: frames per clip (T) in TrackletLink
