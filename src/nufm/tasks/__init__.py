"""nufm.tasks"""
