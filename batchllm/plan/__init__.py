"""Deadlines: the plan over batch, flex and online tiers that keeps a job's deadline at the
lowest price, the clock it is read against, the history of this job's batch times, and the online
capacity its runs learn.

``planner`` is the plan itself (a pure function), ``clock`` reads deadlines, ``history`` keeps
batch times, ``capacity`` follows what the limiter learns and makes the plan again with it,
``setup`` makes the plan for a run or an estimate, ``text`` prints it. Moving rows at the switch
point is batch mode's (``batchllm.run.batch``); moving a row from flex to the standard tier is
``batchllm.retry``'s.
"""
