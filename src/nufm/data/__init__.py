"""Data: the event record, PILArNet-M HDF5 files, real-sample readers, transforms and collate."""
