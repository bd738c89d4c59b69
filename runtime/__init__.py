"""Runtime: the workflow manager that selects, spawns, tracks and feeds back."""
