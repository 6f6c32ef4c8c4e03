"""nufm.ssl"""
