"""Language models: base checkpoints and generation backends.

`model` builds the offline `tiny` base (its own BPE tokenizer and a random Qwen2-architecture LM)
or loads any Hugging Face id or path; `bundled_lm` locates the SmolLM2 model that installs from the
package registry and converts it once; `generation` is the backend behind every LLM call of the
pipeline (rules, transformers, an OpenAI-compatible server, vLLM) with its answer cache.
"""
