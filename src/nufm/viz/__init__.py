"""nufm.viz"""
