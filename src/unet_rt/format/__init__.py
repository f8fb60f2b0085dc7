"""The model file (``model_file``: reading, writing, validation through the native reader) and the
architecture's tile geometry (``geometry``: output sizes, halo, valid input sizes)."""
