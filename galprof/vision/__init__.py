"""On-device models: one class per task over a shared TFLite/ONNX runtime."""
