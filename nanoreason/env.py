"""The reasoning MDP as a gym-style environment (after OpenR's CoTEnv).

    state   the prompt plus the steps taken so far (text)
    action  one reasoning step: a line of text (the newline is added by the env)
    reward  per step: the weighted, shaped step reward of `rewards.compound_reward`; at termination also the
            sequence reward (outcome, format)
    end     terminated at the `#### N` answer line or when the action contains end-of-text;
            truncated after `max_steps` actions (tool calls included) or `max_tokens` tokens
    tool    with tool="calculator", an action that stops inside a line at a call `<<expr=` gets the calculator's
            `result>>` appended by the environment, reward 0, and the next action goes on with the same line: the
            tool's text is part of the state, never of an action (as `tool_mask` in the token view)

The trainers work on tokens rather than lines, but with the same definitions: a step is a line before `####`, and
its reward lands on the token that ends the line (`rewards.step_end_tokens`); tests/test_rewards_env.py and
tests/test_tools.py check they agree.
"""
from __future__ import annotations

from nanoreason.evaluate import prompt_text
from nanoreason.rewards import compound_reward
from nanoreason.tasks import Problem
from nanoreason.tokenizer import EOT
from nanoreason.tools import TOOLS, calculator, open_call


class CoTEnv:
    def __init__(self, problem: Problem, weights: dict[str, float], shaping: str = "none", max_steps: int = 8,
                 max_tokens: int | None = None, tokenizer=None, tool: str = "none"):
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
        self.problem, self.weights, self.shaping, self.tool = problem, weights, shaping, tool
        self.max_steps, self.max_tokens, self.tok = max_steps, max_tokens, tokenizer
        self.reset()

    def reset(self) -> str:
        self.lines, self.partial, self.done, self.paid = [], "", False, 0.0   # partial: a line cut by a tool call
        self.actions = 0
        return self.state

    @property
    def state(self) -> str:
        return prompt_text(self.problem.question) + self.completion

    @property
    def completion(self) -> str:
        return "\n".join(self.lines + ([self.partial] if self.partial else []))

    def step(self, action: str):
        if self.done:
            raise RuntimeError("step() after the episode ended; call reset()")
        eot = EOT in action
        self.actions += 1
        line = self.partial + action.split(EOT)[0]
        expr = open_call(line) if self.tool == "calculator" and not eot else None
        if expr is not None:                          # the tool writes the result; the same line goes on next step
            self.partial = line + calculator(expr) + ">>"
            if not self._out_of_room():
                return self.state, 0.0, False, False, {"tool": self.partial[len(line):]}
        else:
            self.partial = ""
            self.lines.append(line.rstrip("\n"))
        seq, steps = compound_reward(self.problem, self.completion, self.weights, self.shaping)
        # pay what the step rewards of the text so far add to what was already paid (under delta shaping adding a
        # step also changes the previous step's reward, r_k - r_{k+1}, so a per-step payment would be wrong)
        reward = sum(steps) - self.paid
        self.paid = sum(steps)
        terminated = expr is None and (eot or line.strip().startswith("####"))
        truncated = not terminated and self._out_of_room()
        if terminated or truncated:
            reward += seq
            self.done = True
        info = {"step_rewards": steps, "sequence_reward": seq, **({"tool": self.partial[len(line):]} if expr else {})}
        return self.state, reward, terminated, truncated, info

    def _out_of_room(self) -> bool:
        n_tokens = len(self.tok.encode(self.completion)) if (self.tok and self.max_tokens) else 0
        return self.actions >= self.max_steps or (self.max_tokens is not None and n_tokens >= self.max_tokens)


class BatchedCoTEnv:
    """Many CoTEnvs stepped together; finished ones ignore their actions and return reward 0."""

    def __init__(self, problems, **kw):
        self.envs = [CoTEnv(p, **kw) for p in problems]

    def reset(self) -> list[str]:
        return [e.reset() for e in self.envs]

    def step(self, actions: list[str]):
        out = []
        for e, a in zip(self.envs, actions):
            out.append((e.state, 0.0, True, False, {}) if e.done else e.step(a))
        return tuple(list(x) for x in zip(*out))
