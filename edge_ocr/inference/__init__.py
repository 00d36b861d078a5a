"""onnxruntime inference stages: detector, angle classifier, recognizer, CTC decoding."""
