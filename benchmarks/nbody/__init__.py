"""The N-body benchmark of the EGNN paper: data against the reference simulator, models against published MSE."""
