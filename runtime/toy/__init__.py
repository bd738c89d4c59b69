"""Toy multiscale applications (generator, setup, simulate) that run a campaign on one laptop."""
