"""Export of a trained agent to separate ONNX graphs, int8 quantization and parity checks."""
