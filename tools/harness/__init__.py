"""Code that runs inside GPU child processes: loading a solution, making inputs, calling it.

The server process never imports this package's torch-using modules; only the children do.
"""
