"""DRQA's training pipeline: chains of thought -> labels -> GRPO on the labelling task -> evaluation.

Modules: ``labels`` and ``judge`` are pure; ``generate`` talks to any LLM client; ``grpo`` and
``evaluate`` import torch/transformers (import them only where a GPU or CPU model is wanted);
``manifest`` writes provenance next to every data file and checkpoint.
"""
