"""jatos-sync: keep the study assets of JATOS studies in step with local folders."""

__version__ = "0.1.0"
