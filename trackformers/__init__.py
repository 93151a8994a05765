"""trackformers: Transformer track reconstruction for LHC-style trackers.

Units everywhere: mm (positions), GeV (momenta, energies), T (magnetic field), ns (times).
"""

from trackformers.errors import InputError
from trackformers.events import Event

__all__ = ["Event", "InputError", "__version__"]
__version__ = "0.1.0"
