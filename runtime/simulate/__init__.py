"""`mummi simulate`: the unchanged workflow manager in virtual time over a simulated machine."""
