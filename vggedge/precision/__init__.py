"""Precision variants of an FP32 ONNX model: FP16 (fp16.py) and calibrated INT8 Q/DQ (int8.py)."""
