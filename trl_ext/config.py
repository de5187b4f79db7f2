"""SessionPPOConfig: every knob of the session-level Crawler PPO (DESIGN §1.3), with its source.

Sources named in the help texts: "paper" = arXiv 2501.10120 §3.2; "released launch" = the PPO command of the
bytedance/pasa README; "released trainer" = hyc2026/trl ``trl/trainer/ppo_trainer.py``, ``ppo_config.py`` and
``custom_agent/utils.py``.

Why ``TrainingArguments`` and not trl's ``PPOConfig``: the trl this project installs (1.16) ships no PPO at all:
neither ``trl.PPOConfig`` nor a ``trl.experimental.ppo`` module exists (its ``trl/experimental/`` holds other
trainers only; earlier trl releases had ``trl.experimental.ppo.PPOConfig``). The fields that ``PPOConfig`` declared
(``num_ppo_epochs``, ``kl_coef``, ``vf_coef``, ``cliprange``, ``cliprange_value``, ``gamma``, ``lam``,
``response_length``, ``temperature``, ``total_episodes``, ``local_rollout_forward_batch_size``) keep its names and
meanings here; the optimisation fields (``learning_rate``, ``per_device_train_batch_size``,
``gradient_accumulation_steps``, ``seed``, ``save_steps``, ``bf16`` ...) keep their transformers meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from trl_ext.released import RELEASED_PPO_VALUES

DEDUP_SCOPES = ("episode", "reply")
VALUE_PAPER_RULES = ("best", "shortest_of_top")


@dataclass
class SessionPPOConfig(TrainingArguments):
    r"""Configuration of ``SessionPPOTrainer``; parse with ``TrlParser``/``HfArgumentParser`` (``--config x.yaml``).

    Batch shape: every update, each process takes ``per_device_train_batch_size * gradient_accumulation_steps``
    user queries (released: 1 x 4) and rolls them out for ``rounds`` rounds; the resulting sessions are trained in
    micro-batches of ``per_device_train_batch_size`` with an optimizer step every ``gradient_accumulation_steps``
    micro-batches, for ``num_ppo_epochs`` epochs. ``total_episodes`` counts user queries over all processes.
    """

    # ---- models ----
    model_name_or_path: str = field(
        default="",
        metadata={
            "help": "SFT crawler checkpoint: initial policy and the frozen reference (released --sft_model_path, "
            "accepted)."
        },
    )
    value_model_path: str | None = field(
        default=None,
        metadata={
            "help": "Backbone of the value model, given a fresh scalar head; default: model_name_or_path "
            "(released --reward_model_path ../output/sft_crawler)."
        },
    )
    value_head_init_std: float = field(
        default=0.01, metadata={"help": "Std of the N(0, std) init of the value head (released ppo_tldr.py: 0.01)."}
    )
    dtype: str = field(
        default="auto", metadata={"help": "dtype to load the three models in: 'auto', 'bfloat16', 'float32'."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "'sdpa', 'eager' or 'flash_attention_2' (released launch: flash_attention_2)."}
    )

    # ---- rollout ----
    rounds: int = field(
        default=3,
        metadata={
            "help": "Rollout rounds per update: one search round, then expand rounds (released launch --rounds 3)."
        },
    )
    response_length: int = field(
        default=1024, metadata={"help": "Token budget of a crawler reply (released launch --response_length 1024)."}
    )
    response_length_is_total: bool = field(
        default=False,
        metadata={
            "help": "Released behaviour: generate with max_length=response_length, i.e. prompt + reply <= 1024 tokens, "
            "which leaves long expand prompts a few tokens. Default False: response_length new tokens."
        },
    )
    temperature: float = field(
        default=0.7,
        metadata={"help": "Sampling temperature of rollouts and of all log-probs (released OnPolicyConfig: 0.7)."},
    )
    local_rollout_forward_batch_size: int = field(
        default=4,
        metadata={"help": "Sessions per no-grad forward/generate call (released launch: 4)."},
    )
    max_actions: int = field(
        default=5,
        metadata={"help": "Actions executed per reply; later ones only pay their cost (released max_action = 5)."},
    )
    search_results_k: int = field(
        default=10, metadata={"help": "Results requested per search query (released google num=10)."}
    )
    search_papers_kept: int = field(
        default=5,
        metadata={
            "help": "Papers kept per search query: the first of the search_results_k results that resolve in the "
            "paper DB (released MAX_PAPERS=5)."
        },
    )
    expand_top_k: int = field(
        default=6,
        metadata={
            "help": "Sessions carried to the next round: the best new papers (by score) of the whole local batch "
            "(released: 6, hard-coded, repeated to fill; here fewer when fewer papers are found)."
        },
    )
    value_papers_max: int = field(
        default=5,
        metadata={"help": "Best new papers whose session values an action's reward adds (released MAX_PAPERS = 5)."},
    )
    value_max_length: int = field(
        default=992, metadata={"help": "Token limit of a value-bootstrap prompt (released value_max_length 992)."}
    )
    max_prompt_length: int = field(
        default=2048, metadata={"help": "Prompts longer than this many tokens are cut on the left (expand prompts)."}
    )

    # ---- rewards (paper §3.2, DESIGN §1.3) ----
    alpha_search: float = field(
        default=1.5, metadata={"help": "α of a search action per relevant new paper (released --search_select_score)."}
    )
    alpha_expand: float = field(
        default=1.5,
        metadata={"help": "α of an expand action per relevant new paper (released --expand_select_score)."},
    )
    c_search: float = field(
        default=0.1, metadata={"help": "Cost c of a search action; a [StopSearch] earns +c (released --search_cost)."}
    )
    c_expand: float = field(
        default=0.1, metadata={"help": "Cost c of an expand action; a [StopExpand] earns +c (released --expand_cost)."}
    )
    reward_clip_max: float = field(
        default=5.0,
        metadata={"help": "Upper clip of an action's reward; the lower clip is −c (released: max(min(r, 5), −c))."},
    )
    gamma1: float = field(
        default=0.1,
        metadata={"help": "γ1: weight of the values of the sessions an action opens (paper; released --gamma1 0.1)."},
    )
    use_value_bootstrap: bool = field(
        default=True, metadata={"help": "Add γ1·ΣV(new sessions) to action rewards (released --use_vm True)."}
    )
    use_selector: bool = field(
        default=True,
        metadata={
            "help": "A paper is relevant when in the answers OR selector score > 0.5 (released --use_selector)."
        },
    )
    select_threshold: float = field(
        default=0.5, metadata={"help": "Selector score above which a paper counts as relevant (paper: 0.5)."}
    )
    dedup_scope: str = field(
        default="episode",
        metadata={
            "help": "Which papers count as new: 'episode' = not seen before for this user query in the whole rollout "
            "(paper: 'new papers'); 'reply' = released behaviour, repeats removed within one reply only.",
            "choices": list(DEDUP_SCOPES),
        },
    )

    # ---- released behaviour (trl_ext/released.py; docs/released_differences.md "PPO") ----
    released_behaviour: bool = field(
        default=False,
        metadata={
            "help": "Reproduce the authors' trainer (hyc2026/trl) wherever this project deviates: every field of "
            "trl_ext.released.RELEASED_PPO_VALUES still at its default takes the released value (the flags of this "
            "group, dedup_scope=reply, response_length_is_total=true, value_warmup_updates 50 -> 49). Default "
            "false: the project's corrected behaviour."
        },
    )
    bootstrap_after_eos: bool = field(
        default=False,
        metadata={
            "help": "Released: keep the value of the state after EOS (the first pad), bootstrap GAE from it and train it "
            "toward 0. Default: EOS is terminal."
        },
    )
    value_papers_rule: str = field(
        default="best",
        metadata={
            "help": "Which new papers of an action are valued (γ1·ΣV) and become next-round candidates. 'best': the "
            "value_papers_max best by score then arXiv id, sections required; every new paper with sections is a "
            "candidate. 'shortest_of_top' (released): the value_papers_max+2 best by score, then the value_papers_max "
            "with the shortest expand prompt, papers without sections included; only those are candidates.",
            "choices": list(VALUE_PAPER_RULES),
        },
    )
    keep_empty_actions: bool = field(
        default=False,
        metadata={
            "help": "Released: an empty `[Search] ` / `[Expand] ` argument is an action (executed, pays the cost). "
            "Default: dropped, as the inference parser does."
        },
    )
    sections_ascii: bool = field(
        default=False,
        metadata={
            "help": "Released: the expand prompt's Sections list is json.dumps with non-ASCII escaped (\\u00e9). "
            "Default: JSON with the characters kept."
        },
    )
    clip_floor_search_cost: bool = field(
        default=False,
        metadata={
            "help": "Released: every action's reward is clipped below at −c_search (expand actions too). "
            "Default: −c of the action's kind."
        },
    )
    fill_sessions: bool = field(
        default=False,
        metadata={
            "help": "Released: repeat the next-round papers to fill expand_top_k sessions, and re-run this round's "
            "sessions (repeated to fill) when no paper was found. Default: as many sessions as papers."
        },
    )
    reward_on_bracket_ids: bool = field(
        default=False,
        metadata={
            "help": "Released: place action rewards on the tokens whose id is the tokenizer's `[` (Qwen 58), the stop "
            "bonus on the last `]` (60), scanning from the end. Default: from character offsets."
        },
    )
    resolve_citations_by_id: bool = field(
        default=True,
        metadata={
            "help": "Resolve a citation the database links to an arXiv id (Paper.section_ids) by that id, an unknown "
            "id falling back to the title; the others by title (AgentConfig's flag of the same name). Released "
            "(false): every cited title by title."
        },
    )
    query_from_reply: bool = field(
        default=False,
        metadata={
            "help": "Released: the user query written into the value and next-round expand prompts is parsed back "
            "from the decoded search text (`User Query:(.*?)assistant\\n\\[`), so it is empty when the reply does "
            "not start with `[`. Default: the episode's query."
        },
    )
    truncate_prompts_right: bool = field(
        default=False,
        metadata={
            "help": "Released: expand prompts are cut on the right at value_max_length (992) tokens, and a session's "
            "value is read at index −2 of chat(user, assistant `[`) cut on the right at value_max_length; the cut "
            "can drop the `[` or the generation prompt. Default: prompts are cut on the left (max_prompt_length; "
            "value_max_length for value prompts) and the value is read at the `[`."
        },
    )

    # ---- PPO ----
    total_episodes: int = field(
        default=16000, metadata={"help": "User queries over the whole run, all processes (released launch 16,000)."}
    )
    num_ppo_epochs: int = field(default=2, metadata={"help": "PPO epochs per rollout (released launch 2)."})
    kl_coef: float = field(default=0.1, metadata={"help": "β of the per-token KL penalty (released launch 0.1)."})
    vf_coef: float = field(default=10.0, metadata={"help": "Value-loss coefficient (released launch 10.0)."})
    cliprange: float = field(default=0.2, metadata={"help": "PPO ratio clip ε (released PPOConfig 0.2)."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip ε_v (released PPOConfig 0.2)."})
    gamma: float = field(default=1.0, metadata={"help": "γ0, the per-token discount (paper; released 1.0)."})
    lam: float = field(default=0.95, metadata={"help": "GAE λ (paper; released 0.95)."})
    whiten_advantages: bool = field(
        default=True, metadata={"help": "Whiten advantages over the local batch (released: always)."}
    )
    value_warmup_updates: int = field(
        default=50,
        metadata={
            "help": "Updates trained with the value loss only (released warm_up_step 50; its check "
            "`update < 50` with updates counted from 1 made that 49)."
        },
    )

    # ---- environment ----
    paper_db: str | None = field(
        default=None, metadata={"help": "Released paper DB zip, e.g. data/paper_database/cs_paper_2nd.zip."}
    )
    id2paper: str | None = field(
        default=None,
        metadata={"help": "Its id2paper.json (arXiv id -> title), e.g. data/paper_database/id2paper.json."},
    )
    search_index: str | None = field(
        default=None, metadata={"help": "Offline search index over the paper DB (built by `pasa index`)."}
    )
    online: bool = field(
        default=False,
        metadata={
            "help": "Search with Google through Serper (SERPER_API_KEY) as the released training did; "
            "default: offline local search."
        },
    )
    use_end_date: bool = field(
        default=False,
        metadata={"help": "Restrict searches to papers before the query's source paper − 7 days (released RL: no)."},
    )
    selector_path: str | None = field(
        default=None,
        metadata={
            "help": "Selector: a local checkpoint directory or an OpenAI-compatible URL http://host:port/v1#model "
            "(the released trainer left this as a stub). Needed when use_selector is true."
        },
    )
    selector_batch_size: int = field(default=8, metadata={"help": "Selector prompts per forward (local selector)."})
    selector_device: str | None = field(
        default=None,
        metadata={"help": "Device of a local selector ('cpu', 'cuda:0'); default: this process's device."},
    )

    # ---- TrainingArguments defaults changed to the released launch ----
    learning_rate: float = field(default=1e-6, metadata={"help": "Learning rate (released launch 1e-6)."})
    per_device_train_batch_size: int = field(
        default=1, metadata={"help": "Sessions per micro-batch (released launch 1)."}
    )
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "Micro-batches per optimizer step (released launch 4)."}
    )
    save_steps: float = field(default=10, metadata={"help": "Checkpoint every N updates (released launch 10)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N updates."})

    def __post_init__(self):
        super().__post_init__()
        if self.released_behaviour:
            defaults = {f.name: f.default for f in fields(self)}
            for name, value in RELEASED_PPO_VALUES.items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        if self.value_papers_rule not in VALUE_PAPER_RULES:
            raise ValueError(f"value_papers_rule must be one of {VALUE_PAPER_RULES}, got {self.value_papers_rule!r}")
        if self.dedup_scope not in DEDUP_SCOPES:
            raise ValueError(f"dedup_scope must be one of {DEDUP_SCOPES}, got {self.dedup_scope!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.value_model_path is None:
            self.value_model_path = self.model_name_or_path

    @property
    def local_queries_per_update(self) -> int:
        """User queries each process rolls out per update (released: per-device batch x grad-accum = 4)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def cost(self, kind: str) -> float:
        """The cost c of an action of this kind; a stop tag of the kind earns +c."""
        return self.c_search if kind == "search" else self.c_expand

    def alpha(self, kind: str) -> float:
        """α of an action of this kind, per relevant new paper."""
        return self.alpha_search if kind == "search" else self.alpha_expand
