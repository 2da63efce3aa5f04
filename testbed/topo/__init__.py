"""The layouts: the address plan as data (plan.py) and Mininet Topo classes (layouts.py)."""
