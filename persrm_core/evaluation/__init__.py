"""Evaluation: how well each judge picks the author's response.

`metrics` computes accuracy with bootstrap intervals, format validity, position consistency,
calibration and breakdowns by negative type; `report` writes metrics.json, the Markdown and HTML
report and its plots.
"""
