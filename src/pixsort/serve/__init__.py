"""HTTP serving of saved pixsort models."""
