"""GPU backends of ``Engine``: ``triton`` (Triton kernels on torch CUDA tensors) and ``tensorrt``
(engines built from the ONNX export). The CPU backend is the compiled core itself (``unet_rt._core``).
Neither subpackage is imported unless its backend is asked for."""
