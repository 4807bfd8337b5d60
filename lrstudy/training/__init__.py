"""Training: the fit of a trial, its recording callbacks (one concept a module), and
trials stacked into one compiled program (Keras's or the vectorized engine).
"""
