"""nufm.sim"""
