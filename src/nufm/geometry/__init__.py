"""Parameter-free tensor operations on packed point clouds (offsets, sampling, neighbours,
serialization). Nothing here knows about a detector."""
