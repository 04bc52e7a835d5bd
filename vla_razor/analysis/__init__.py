"""Analysis of finished run folders: points (runs), Pareto frontier and exponential frontier fits
(pareto), polynomial fits and the R^2 table (fits), the paper's plots (plots), and the report (report).

Submodules are imported explicitly (``from vla_razor.analysis.report import write_report``) so that
loading run folders does not pull in matplotlib.
"""
