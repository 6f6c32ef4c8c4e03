"""nufm.models"""
