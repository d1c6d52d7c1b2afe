"""Running a stylisation: options and their checks, the plan of scales and its memory,
checkpoints, and the ``Stylizer`` that runs the coarse-to-fine schedule."""
