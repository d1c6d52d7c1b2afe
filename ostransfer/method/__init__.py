"""The method (docs/algorithm.md): hypercolumn sampling, the STROTSS losses with their
hand-written gradients, the objective of one scale, the schedule and the optimisers."""
