"""A session PPO trainer whose crawler replies are scripted, so what a rollout contains holds by construction.

Search sessions reply ``[Search] <user query>`` then ``[StopSearch]``; expand sessions ``[Expand] <the paper's first
section>`` then ``[StopExpand]``. The replies are tokenised and end in EOS; everything after sampling (log-probs,
values, rewards, PPO) runs on them unchanged. Run as a script, it is ``scripts/ppo.py`` with this trainer, for
multi-process launches: ``accelerate launch ... tests/scripts/scripted_ppo.py --config ... [ppo.py flags]``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from trl_ext.env import Session  # noqa: E402
from trl_ext.trainer import SessionPPOTrainer  # noqa: E402


def scripted_reply(session: Session) -> str:
    """The reply a scripted crawler gives a session."""
    if session.kind == "search":
        return f"[Search] {session.episode.user_query}\n[StopSearch]"
    first = next(iter(session.paper.sections or {"none": []}))
    return f"[Expand] {first}\n[StopExpand]"


class ScriptedRepliesTrainer(SessionPPOTrainer):
    """``SessionPPOTrainer`` whose ``generate_replies`` returns :func:`scripted_reply` for every session."""

    def generate_replies(self, unwrapped, sessions, update=0, round_index=0):
        tok = self.processing_class
        prompts = [self.prompts.prompt_ids(s) for s in sessions]
        texts = [scripted_reply(s) for s in sessions]
        replies = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
        return prompts, replies, [tok.decode(r, skip_special_tokens=True) for r in replies]


if __name__ == "__main__":
    from tests.fakes import load_script

    sys.exit(load_script("ppo").main(trainer_cls=ScriptedRepliesTrainer))
