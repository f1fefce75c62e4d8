"""Load: 8 requests sent at once to one app instance all complete, each with its own result.

Every request has its own photo/speech/seed combination. Each returned video is checked against the
same request run alone, in-process, afterwards: the pipeline is deterministic (fixed seed, libx264
gives identical output for identical frames), so a result that was mixed up with another request's,
or cut short, cannot match its reference.
"""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from test_app import PHOTO, STILL, serve, write_speech

REQUESTS = 8
CONCURRENCY = 4  # requests the app runs at once; the other four wait in the queue


def distinct_generator(folder) -> str:
    """A tiny generator with He-initialised weights: the default DCGAN initialisation (std 0.02)
    makes nearly constant grey frames, so different seeds would give identical videos."""
    from speech_anim.models.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=0.125))
    for module in generator.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    generator.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    checkpoint = distinct_generator(tmp_path_factory.mktemp("he_generator"))
    demo, url = serve(checkpoint, concurrency_limit=CONCURRENCY, max_queue_size=2 * REQUESTS)
    yield url, checkpoint
    demo.close()


def test_concurrent_requests_each_get_their_own_result(served, tmp_path):
    from gradio_client import Client, handle_file

    from speech_anim.app_helpers import animate
    from speech_anim.video import read_video

    url, checkpoint = served
    # Lengths 0.40 s .. 0.96 s (10 .. 24 frames): no two requests have the same number of frames.
    requests = [
        dict(photo=(PHOTO, STILL)[i % 2], speech=write_speech(tmp_path / f"speech{i}.wav", 0.40 + 0.08 * i, 0.3 + 0.2 * i),
             seed=1000 + i)
        for i in range(REQUESTS)
    ]
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    started = threading.Barrier(REQUESTS)

    def submit(request):
        started.wait()  # all eight go out together
        return client.submit(
            photo=handle_file(str(request["photo"])), speech=handle_file(str(request["speech"])),
            seed=request["seed"], paste_back=False, model="", api_name="/animate",
        )

    threads, jobs = [], [None] * REQUESTS
    for i, request in enumerate(requests):
        thread = threading.Thread(target=lambda i=i, request=request: jobs.__setitem__(i, submit(request)))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    results = [job.result(timeout=120) for job in jobs]

    videos = []
    for request, (video, _, summary, blinks, _, status) in zip(requests, results):
        frames, fps = read_video(video)
        reference = animate(request["photo"], str(request["speech"]), seed=request["seed"], paste_back=False,
                            checkpoint=checkpoint)
        expected, _ = read_video(reference.video)
        assert frames.shape == expected.shape, (request, frames.shape, expected.shape)
        assert np.array_equal(frames, expected), f"request {request} got another request's video"
        assert summary["data"] == reference.summary and blinks["data"] == reference.blinks
        assert f"seed {request['seed']}" in status and f"{len(expected)} frames" in status
        videos.append(frames)
    assert len({len(v) for v in videos}) == REQUESTS
    for i in range(REQUESTS):
        for j in range(i + 1, REQUESTS):
            n = min(len(videos[i]), len(videos[j]))
            assert not np.array_equal(videos[i][:n], videos[j][:n]), (i, j)
