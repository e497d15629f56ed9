"""INT8 calibration and Q/DQ quantization (see issue: INT8)."""
