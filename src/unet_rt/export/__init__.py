"""Model exchange: ONNX export (``onnx``, what TensorRT consumes) and bioimage.io packages
(``bioimageio``: export, and import of packages with ONNX weights)."""
