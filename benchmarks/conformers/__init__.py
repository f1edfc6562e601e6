"""Conformer generation: ClofNet against ETKDG, sampler sweeps, selection, seeds, stereo."""
