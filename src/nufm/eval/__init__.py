"""nufm.eval"""
