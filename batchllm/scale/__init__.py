"""One job across many processes and machines.

``shards`` splits a job's rows into shards (each a normal run in its own sub-directory),
``lease`` holds the shared rate limits and cost cap behind the ``Limiter``/``Budget`` seams,
``ray_backend`` runs the shards as Ray tasks with one actor (``actors``) on a Ray it joins or
starts lean (``local_ray``), ``driver`` keeps the driver's record of a sharded run,
``objects`` reads and writes object storage, and ``pool`` spreads requests over a list of
endpoints (each with its own concurrency and, optionally, limits).
Only ``ray_backend``, ``actors`` and ``local_ray`` import Ray; the core never imports them
unless ``[run] backend = "ray"`` asks for it.
"""
