"""Deadlines: the plan over batch and online tiers that keeps a job's deadline at the lowest
price, the clock it is read against, and the history of this job's batch times.

``planner`` is the plan itself (a pure function), ``clock`` reads deadlines, ``history`` keeps
batch times, ``setup`` makes the plan for a run or an estimate, ``text`` prints it. Moving rows
at the switch point is batch mode's (``batchllm.run.batch``).
"""
