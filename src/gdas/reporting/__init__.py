"""Reporting: reading run directories, plots, cell drawings, the HTML report."""
