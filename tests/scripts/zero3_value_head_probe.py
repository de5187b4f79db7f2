"""Launched by tests/scripts/test_zero.py under ZeRO-3: build the PPO models as scripts/ppo.py does and save the
gathered value head (rank 0) to ``<output_dir>/head.pt``, with whether the local shard was empty (partitioned)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pasa.flags import end_launched_process  # noqa: E402
from tests.fakes import load_script  # noqa: E402
from trl_ext.modeling import gathered_params  # noqa: E402


def main() -> None:
    ppo = load_script("ppo")
    _, cfg = ppo.parse_args()
    _, _, _, value_model = ppo.build_models(cfg)
    head = value_model.score.weight
    partitioned = head.numel() == 0
    with gathered_params([head]):
        weight = head.detach().clone()
    if int(os.environ.get("RANK", "0")) == 0:
        os.makedirs(cfg.output_dir, exist_ok=True)
        torch.save({"partitioned": partitioned, "weight": weight}, os.path.join(cfg.output_dir, "head.pt"))
    end_launched_process(0)


if __name__ == "__main__":
    main()
