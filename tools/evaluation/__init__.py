"""run_benchmark and compare_solutions: correctness and timing a solution cannot game.

Three kinds of process take part. The orchestrator (runner.py, in the server's job loop) only
manages processes. The judge (judge.py, trusted) owns the inputs and outputs in GPU memory it
shares with each executor, times every call with its own events around a GPU-side handshake
(channel.py), runs the reference, and decides every verdict. An executor (executor.py,
untrusted, in the sandbox) runs one solution and nothing else; its own report of its kernels
is checked against the judge's clock (report.py). Messages travel over socketpairs (wire.py).
"""
