"""The learning rate itself: schedules, optimizers, the LR range test and its rules.

Nothing here knows studies, stores or notebooks.
"""
