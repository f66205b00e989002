"""run_benchmark: correctness and timing an agent cannot game.

Three kinds of process take part: the orchestrator (evaluate.py, in the server's job loop), the
solution child (solution_child.py, untrusted: it runs the candidate and times it) and the judge
(judge_child.py, trusted: it computes reference outputs and decides correctness). Reference
outputs only ever exist in the judge.
"""
