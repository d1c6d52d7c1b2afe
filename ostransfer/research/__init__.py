"""Research tools beside the core, never imported by it: the torch reference and the
comparison against it (``compare``), a fixed-yardstick score (``score``), benchmarks
(``bench``, ``measure``, ``host``) and their charts and reports. Only this package imports
torch, and only in ``torch_reference``, ``torch_objective`` and ``compare``."""
