"""The simulated provider as batchllm's registry sees it: ``provider = "simulated"``.

Owns ``ENTRY``, found through the ``batchllm.providers`` entry point (the seam any outside
provider uses, so the product never imports the simulator), and its opener: a run with no
``base_url`` gets a simulated provider of its own, started in-process from the job's
``[simulate]`` settings and stopped when the run ends. The simulator speaks OpenAI Chat, so the
entry borrows the OpenAI adapter and batch API. It takes no key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from batchllm.job.spec import JobSpec
from batchllm.providers.registry import ProviderEntry
from batchllm.simulate import start_server
from batchllm.simulate.config import SimConfig

ENTRY = ProviderEntry(
    "simulated",
    "batchllm.providers.openai:OpenAIChat",
    takes_key=False,
    batch_api="batchllm.providers.batches:openai_batches",
    opener="batchllm.simulate.provider:open_simulated",
)


@contextlib.asynccontextmanager
async def open_simulated(job: JobSpec) -> AsyncIterator[str | None]:
    """The run's base URL: the job's, else that of a simulated provider started for the run."""
    if job.model.base_url is not None:
        yield job.model.base_url
        return
    server = await start_server(SimConfig.from_spec(job.simulate))
    try:
        yield server.url
    finally:
        await server.close()
