"""Thin library behind the skill-neuron compendium.

Modules, one job each:
- `tasks`: the task registry (types, labels, verbalizers, hub ids, local files, adversarial links);
- `formats`, `data`: readers for the real file formats, and train/dev/test splits in canonical form;
- `models`: frozen backbones (masked LM, tied encoder, T5) that compute only the verbalizer logits;
- `prompt`: soft-prompt initialisation and safetensors files;
- `tuning`, `evaluation`: resumable prompt tuning, accuracy and macro-F1 on any task;
- `hooks`: context managers that record or perturb FFN activations;
- `skill_neurons`, `analyses`: streamed predictivity, selection, and tidy tables for the book;
- `tiny`: tiny random backbones of the real classes and synthetic tasks (tests, smoke profile).
"""
