"""Raw datasets: the format, the sample generator, loaders and validation."""
