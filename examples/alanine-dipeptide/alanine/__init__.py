"""Alanine dipeptide with OpenMM: an explorer, a setup and an MD job for a mummi-spec campaign."""
