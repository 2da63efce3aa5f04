"""Measurement helpers for experiments: pure analysis on plain numbers (`analysis`) and small
readers of kernel counters (`host`). Nothing here builds a network or imports Mininet."""
