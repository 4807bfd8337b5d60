"""Studies as data: studies and scenarios, budgets, a scenario against its budget,
the competition's phases and grids, published claims. Checked without TensorFlow.
"""
