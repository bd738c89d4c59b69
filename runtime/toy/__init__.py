"""Toy multiscale applications that run a campaign on one laptop."""
