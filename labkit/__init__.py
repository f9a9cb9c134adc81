"""labkit: the helper package of the advanced microservice patterns workbook.

    import labkit
    lab = labkit.connect()      # LABKIT_MODE=local (default) or cluster
    lab.up()
"""

from labkit.lab import Lab, LabError, connect

__version__ = "0.1.0"
__all__ = ["Lab", "LabError", "__version__", "connect"]
