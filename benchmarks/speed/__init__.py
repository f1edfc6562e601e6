"""Training and inference speed of se3mol: throughput, memory, precision, allocator, index sums."""
