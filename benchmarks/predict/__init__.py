"""``se3mol predict`` at scale: memory and molecules/s end to end against pure inference."""
