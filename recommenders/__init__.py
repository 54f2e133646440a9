"""Models, pure and cluster-free: loaders, training, the model bundle, retrieval and ranking."""
