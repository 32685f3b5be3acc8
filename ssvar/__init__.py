"""ssvar: semi-supervised video action recognition on PyTorch Lightning."""

__version__ = "0.1.0"
