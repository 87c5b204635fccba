"""meshgnn: graph neural network surrogates for fields on simulation meshes."""

__version__ = "0.1.0"
