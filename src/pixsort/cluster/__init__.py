"""Clustering of images (embeddings) and of table records."""
