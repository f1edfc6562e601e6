"""Accuracy for a budget: time to accuracy on QM9, short runs of every family, own data against chemprop."""
