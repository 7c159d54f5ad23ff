"""vidseg: universal video segmentation (Mask2Former, DVIS++ with MVC/OMA, Local2Global)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
