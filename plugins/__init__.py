"""CUDA kernels and TensorRT plugins for art::QRAttention and art::TrackletLink."""
