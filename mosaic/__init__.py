"""mosaic: out-of-domain knowledge distillation (MosaicKD) as a thin, readable library."""
from mosaic.spec import ImageSpec

__version__ = "0.1.0"
__all__ = ["ImageSpec", "__version__"]
