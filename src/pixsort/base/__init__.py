"""The base every other layer stands on: errors, model folders, JSON, parameter
constraints, the uint8-image check, progress, and CPU tuning.

Nothing here imports another pixsort package, and nothing here knows about images
beyond the shape of a uint8 batch.
"""
