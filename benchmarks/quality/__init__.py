"""Code quality measured: equivariance errors of every model, import cycles of the package."""
