"""se3mol against peer implementations (EGNN, TFN, SE(3)-Transformer, ClofNet, chemprop), each in its own venv."""
