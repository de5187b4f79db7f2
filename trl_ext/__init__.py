"""Training extensions that install beside stock trl (never a fork of it): SFT data, session-level Crawler PPO.

Modules are imported lazily by their users: ``trl_ext.rewards`` needs torch only, ``trl_ext.trainer`` needs
transformers and accelerate.
"""
