"""Synthesis: preference pairs made from exemplars (PersRM-R1's synthetic data).

`pairs` cuts each author's texts into a prompt and the author's own response and builds the
negative of every pair, through the `strategies` registry (each strategy declares whether it is
author-local, needs an LLM, and which quality gate validates it): `cross_author` (another writer's
text), `perturb` (rule-based changes of personal factors), `swap` (a lexicon swap), and the three
LLM strategies of `llm_negatives`, whose prompts are the versioned `templates`.
"""
