import pytest

from tests.conftest import TENANT_A


@pytest.fixture(autouse=True)
def in_memory_channel_layer(settings):
    """Events sent from this process stay in it; the live tests' workers and server use Redis."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def job_events():
    """`listen(job)` joins the job's group in tenant A; the function it returns gives every event received since."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from jobs.events import job_group_name

    def listen(job):
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(job_group_name(tenant_schema=TENANT_A, job_id=job.pk), channel)

        async def received() -> list[dict]:
            events = []
            while True:
                try:
                    events.append(await asyncio.wait_for(layer.receive(channel), timeout=0.05))
                except TimeoutError:
                    return events

        return async_to_sync(received)

    return listen
