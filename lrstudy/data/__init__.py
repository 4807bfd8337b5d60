"""Data: the built-in and user datasets, their splits, the examples' order each epoch.
"""
