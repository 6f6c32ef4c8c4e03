"""nufm.train"""
