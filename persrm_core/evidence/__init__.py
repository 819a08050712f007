"""Evidence: measured style signals of a pair, fitted on the training split.

`style` measures personal factors (casing, punctuation, sentence length...); `embeddings` and
`style_encoder` embed texts with the bundled MiniLM and its contrastive fine-tune on the training
authors; `signals` turns those and the fitted IDF tables into per-response similarities to the
exemplars (`EvidenceModel`, the folder a checkpoint carries); `combined` weighs them with a logistic
model fitted on the train split; `readings` is the evidence block the judge is shown.
"""
