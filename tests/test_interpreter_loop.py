"""The model -> code -> result -> model loop, with a scripted stand-in and with the real model."""

from __future__ import annotations

import time

import pytest

from backend.interpreter import (
    EngineTurn,
    KernelSession,
    LoopSettings,
    observation_role,
    run_rounds,
    system_prompt,
)
from backend.sampling import SamplingSettings


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    with KernelSession(tmp_path_factory.mktemp("loop")) as session:
        yield session


class Scripted:
    """A stand-in model: yields each scripted reply in small pieces; records what it was sent."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[list[dict]] = []
        self.closed = 0

    def __call__(self, messages):
        self.prompts.append(messages)
        reply = self.replies.pop(0) if self.replies else "Done."
        try:
            for start in range(0, len(reply), 7):
                yield reply[start:start + 7]
        finally:
            self.closed += 1


def drain(steps):
    return [step.kind for step in steps]


def test_code_runs_and_the_model_reads_the_result(kernel):
    model = Scripted(
        "I will compute it.\n```python\nanswer = 6 * 7\nprint(answer)\n```\nThe answer is 41.",
        "The kernel printed 42, so the answer is 42.")
    history = [{"role": "user", "content": "What is 6 times 7?"}]
    kinds = drain(run_rounds(model, kernel, history, "SYS", LoopSettings(max_rounds=4)))
    assert [e["role"] for e in history] == ["user", "assistant", "observation", "assistant"]
    reply, observation, final = history[1:]
    assert reply["content"].endswith("```") and "41" not in reply["content"]  # guess cut off
    assert reply["code"] == "answer = 6 * 7\nprint(answer)"
    assert observation["status"] == "ok" and observation["content"] == "```result\n42\n```"
    assert final["code"] is None and "42" in final["content"]
    second_prompt = model.prompts[1]
    assert second_prompt[0] == {"role": "system", "content": "SYS"}
    assert second_prompt[-1] == {"role": "observation", "content": "```result\n42\n```"}
    assert model.closed == 2  # the first turn was closed as soon as its code was complete
    assert kinds.count("reply") == 2 and kinds.count("run") == 1 and kinds.count("result") == 1


def test_an_error_goes_back_so_the_model_can_fix_it(kernel):
    model = Scripted("```python\nprint(undefined_name)\n```", "```python\nprint('fixed')\n```",
                     "Fixed.")
    history = [{"role": "user", "content": "go"}]
    drain(run_rounds(model, kernel, history, "", LoopSettings(observation_role="user")))
    statuses = [e["status"] for e in history if e["role"] == "observation"]
    assert statuses == ["error", "ok"]
    assert "NameError" in model.prompts[1][-1]["content"]
    assert model.prompts[1][-1]["role"] == "user"


def test_rounds_are_capped(kernel):
    model = Scripted(*["```python\nprint('again')\n```"] * 10)
    history = [{"role": "user", "content": "loop forever"}]
    drain(run_rounds(model, kernel, history, "", LoopSettings(max_rounds=3)))
    assert len(model.prompts) == 3
    assert sum(e["role"] == "observation" for e in history) == 3
    assert "Stopped after 3 rounds" in history[-1]["notice"]


def test_images_reach_the_model_as_a_marker(kernel):
    model = Scripted("```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                     "plt.show()\n```", "A line.")
    history = [{"role": "user", "content": "plot"}]
    drain(run_rounds(model, kernel, history, "", LoopSettings()))
    observation = history[2]
    assert observation["outputs"][0].data.startswith(b"\x89PNG")
    assert observation["content"] == "```result\n[Image]\n```"


def test_timeout_of_the_models_code(kernel):
    model = Scripted("```python\nimport time\ntime.sleep(60)\n```", "Too slow.")
    history = [{"role": "user", "content": "wait"}]
    started = time.monotonic()
    drain(run_rounds(model, kernel, history, "", LoopSettings(timeout_s=1)))
    assert time.monotonic() - started < 10
    assert history[2]["status"] == "timeout" and "Timed out" in history[2]["content"]


def test_closing_the_loop_mid_reply_keeps_the_partial_reply():
    model = Scripted("A long answer that the user stops half way through.")
    history = [{"role": "user", "content": "talk"}]
    steps = run_rounds(model, None, history, "", LoopSettings())
    for step in steps:
        if step.kind == "delta" and len(step.entry["content"]) > 10:
            break
    steps.close()  # what a click on Stop does to the page's loop
    assert history[-1]["role"] == "assistant" and history[-1]["stopped"]
    assert 10 < len(history[-1]["content"]) < 40
    assert model.closed == 1


def test_stop_during_a_cell_interrupts_it(kernel):
    class Stop(Exception):
        pass

    def stop_soon(elapsed, _outputs):
        if elapsed > 0.3:
            raise Stop

    model = Scripted("```python\nimport time\nphase = 'started'\ntime.sleep(30)\n```")
    history = [{"role": "user", "content": "sleep"}]
    started = time.monotonic()
    with pytest.raises(Stop):
        drain(run_rounds(model, kernel, history, "", LoopSettings(), on_progress=stop_soon))
    assert time.monotonic() - started < 8
    assert history[-1]["status"] == "stopped"
    assert kernel.execute("phase").outputs[0].text == "'started'"


def test_real_model_drives_the_loop_to_a_clean_end(engine, kernel):
    """SmolLM2 copies a given block well enough (greedy) for its code to run for real."""
    tokenizer = engine.loaded.tokenizer
    turn = EngineTurn(engine, SamplingSettings(temperature=0.0, max_new_tokens=32))
    history = [{"role": "user",
                "content": "Copy this code block exactly, nothing else:\n```python\n"
                           "print(2 ** 10)\n```"}]
    steps = list(run_rounds(turn, kernel, history, system_prompt(kernel.workdir),
                            LoopSettings(max_rounds=2, timeout_s=20,
                                         observation_role=observation_role(tokenizer))))
    replies = [e for e in history if e["role"] == "assistant"]
    observations = [e for e in history if e["role"] == "observation"]
    assert 1 <= len(replies) <= 2 and all(r["stats"]["new_tokens"] > 0 for r in replies)
    assert len(observations) == sum(r["code"] is not None for r in replies)
    assert replies[0]["code"] is not None, replies[0]["content"]
    assert observations[0]["status"] == "ok" and "1024" in observations[0]["content"]
    assert steps[-1].kind in ("reply", "result")
    assert kernel.execute("1 + 1").outputs[0].text == "2"  # the kernel is fine afterwards
