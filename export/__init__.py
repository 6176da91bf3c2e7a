"""bsrn_edge.export: checkpoint → ONNX → simplified → FP16 → TensorRT engine."""
