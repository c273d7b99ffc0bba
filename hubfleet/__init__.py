"""hubfleet: one JupyterHub per course, from a short descriptor."""

__version__ = "0.1.0"
