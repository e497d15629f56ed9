"""The runtime: what runs an engine dir, and knows nothing of cameras.

engine_dir (the contract: formats, the manifest read and written, graph I/O, the batch profile),
backends (ONNX Runtime, TensorRT), engine (ARTEngine: the graphs behind runners), streaming
(frames in, decisions out). Imports the ground (art_edge.errors, files, preprocess) only.
"""
